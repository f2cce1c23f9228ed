// SPDX-License-Identifier: GPL-2.0
/*
 * bpfilter.ko: starts the usermode helper embedded in this module, checks
 * that it answers, and forwards the iptables get/setsockopt calls that the
 * kernel's bpfilter hooks hand us to it over two pipes, with the caller's
 * bytes copied in and the answer's copied out (msgfmt.h). hooks.c runs the
 * helper's programs at netfilter's hooks. Everything else happens in the
 * helper.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/init.h>
#include <linux/capability.h>
#include <linux/fs.h>
#include <linux/mm.h>
#include <linux/poll.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/wait.h>
#include <linux/netfilter/x_tables.h>
#include <linux/netfilter_ipv4/ip_tables.h>
#include <net/sock.h>
#include <net/net_namespace.h>

#include "compat.h"
#include "bpfilter.h"
#include "msgfmt.h"
#include "umh_blob.h"

/* As x_tables.c's XT_MAX_TABLE_SIZE, plus a replace's header. */
/* ip_tables' XT_MAX_TABLE_SIZE: no table, and no counters, are larger. */
#define BPFILTER_MAX_TABLE	(512 * 1024 * 1024)

/*
 * bpfilter.timeout_ms: the longest a request to the umh may take, from its
 * first byte written to its reply's last byte read. Past it, the umh is
 * killed (the next call starts another one) and the call fails with
 * -ETIMEDOUT. Below the hung-task detector's 120 s: the waits are
 * uninterruptible.
 */
static unsigned int timeout_ms = 60000;
module_param(timeout_ms, uint, 0644);
MODULE_PARM_DESC(timeout_ms, "bound of each request to the umh, in ms");

static unsigned long umh_deadline(void)
{
	return msecs_to_jiffies(READ_ONCE(timeout_ms)) ? : 1;
}

static void shutdown_umh(void)
{
	struct pid *tgid = bpfilter_ops.info.tgid;

	lockdep_assert_held(&bpfilter_ops.lock);
	if (!tgid)
		return;
	kill_pid(tgid, SIGKILL, 1);
	wait_event(tgid->wait_pidfd, thread_group_exited(tgid));
	bpfilter_umh_cleanup(&bpfilter_ops.info);
}

/*
 * The pipes' own waits are interruptible, and their wakeups reach only
 * interruptible sleepers; the module sleeps uninterruptibly (a freezer,
 * ptrace or job-control wakeup must not cut a call short, and a killed
 * caller just finishes its call), so it queues itself on the pipe through
 * poll, with a wakeup of its own.
 */
struct umh_waiter {
	poll_table pt;
	wait_queue_entry_t wq;
	wait_queue_head_t *head;
};

static int umh_wake(wait_queue_entry_t *wq, unsigned int mode, int sync,
		    void *key)
{
	return wake_up_process(wq->private);
}

static void umh_queue(struct file *file, wait_queue_head_t *head,
		      poll_table *pt)
{
	struct umh_waiter *w = container_of(pt, struct umh_waiter, pt);

	if (w->head)
		return;
	w->head = head;
	init_waitqueue_func_entry(&w->wq, umh_wake);
	w->wq.private = current;
	add_wait_queue(head, &w->wq);
}

/* Until file has one of events, or *left jiffies are spent. */
static int umh_wait(struct file *file, __poll_t events, unsigned long *left)
{
	struct umh_waiter w = { .head = NULL };
	int err = 0;

	init_poll_funcptr(&w.pt, umh_queue);
	if (!(vfs_poll(file, &w.pt) & events)) {
		for (;;) {
			set_current_state(TASK_UNINTERRUPTIBLE);
			if (vfs_poll(file, NULL) & events)
				break;
			if (!*left) {
				err = -ETIMEDOUT;
				break;
			}
			*left = schedule_timeout(*left);
		}
		__set_current_state(TASK_RUNNING);
	}
	if (w.head)
		remove_wait_queue(w.head, &w.wq);
	return err;
}

/* -EPIPE: the umh is gone. -ETIMEDOUT: *left is spent. */
static int umh_write(const void *buf, size_t len, unsigned long *left)
{
	struct file *file = bpfilter_ops.info.pipe_to_umh;
	loff_t pos = 0;
	ssize_t n;
	int err;

	while (len) {
		/* A write to a pipe without reader raises SIGPIPE: look first. */
		if (vfs_poll(file, NULL) & EPOLLERR)
			return -EPIPE;
		n = kernel_write(file, buf, len, &pos);
		if (n > 0) {
			buf += n;
			len -= n;
			continue;
		}
		if (n != -EAGAIN) {
			pr_err("write to umh failed: %zd\n", n);
			return -EPIPE;
		}
		err = umh_wait(file, EPOLLOUT | EPOLLERR, left);
		if (err)
			return err;
	}
	return 0;
}

static int umh_read(void *buf, size_t len, unsigned long *left)
{
	struct file *file = bpfilter_ops.info.pipe_from_umh;
	loff_t pos = 0;
	ssize_t n;
	int err;

	while (len) {
		n = kernel_read(file, buf, len, &pos);
		if (n > 0) {
			buf += n;
			len -= n;
			continue;
		}
		if (n != -EAGAIN) {
			pr_err("read from umh failed: %zd\n", n);
			return -EPIPE;
		}
		err = umh_wait(file, EPOLLIN | EPOLLHUP, left);
		if (err)
			return err;
	}
	return 0;
}

/*
 * Every error of the transport stops the umh (the kernel starts another
 * one on the next call): a request half sent or a reply half read leaves
 * the pipes out of step. The call then fails with -ETIMEDOUT (too slow),
 * -EPROTO (a reply that breaks msgfmt.h) or -EFAULT (the umh is gone).
 */
static void set_nonblock(struct file *file)
{
	spin_lock(&file->f_lock);
	file->f_flags |= O_NONBLOCK;
	spin_unlock(&file->f_lock);
}

static int umh_fail(int err)
{
	lockdep_assert_held(&bpfilter_ops.lock);
	if (err == -ETIMEDOUT)
		pr_err("bpfilter_umh did not answer in %u ms: killed it\n",
		       READ_ONCE(timeout_ms));
	else if (err == -EPROTO)
		pr_err("bpfilter_umh broke the protocol: killed it\n");
	shutdown_umh();
	return err == -EPIPE ? -EFAULT : err;
}

/*
 * Sends req and its payload (req->len bytes), reads the reply's header.
 * The reply's payload is the caller's to read.
 */
static int umh_request(const struct mbox_request *req, const void *payload,
		       struct mbox_reply *reply, unsigned long *left)
{
	int err;

	lockdep_assert_held(&bpfilter_ops.lock);
	if (!bpfilter_ops.info.tgid)
		return -EFAULT;
	err = umh_write(req, sizeof(*req), left);
	if (!err)
		err = umh_write(payload, req->len, left);
	if (!err)
		err = umh_read(reply, sizeof(*reply), left);
	if (!err && reply->status > 0)
		err = -EPROTO;
	return err ? umh_fail(err) : 0;
}

/*
 * bpfilter.trace=1 (or 1 in /sys/module/bpfilter/parameters/trace): the
 * umh logs every forwarded call, for developers. Off, it logs only what an
 * admin needs (refusals, failures, start and stop).
 */
static bool trace;
module_param(trace, bool, 0644);
MODULE_PARM_DESC(trace, "log every forwarded sockopt call in the kernel log");

bool bpfilter_tracing(void)
{
	return READ_ONCE(trace);
}

/* The flags of every request: the module's own ones are traced too. */
static u32 req_flags(void)
{
	return bpfilter_tracing() ? BPFILTER_REQ_TRACE : 0;
}

/*
 * Tells the umh of the namespaces gone since it last heard, in one request.
 * Whatever is not sent stays pending. An error means the umh is gone.
 */
static int send_exits(void)
{
	struct mbox_request req = {
		.is_set	= 1,
		.cmd	= BPFILTER_CMD_NETNS_EXIT,
		.pid	= current->pid,
		.flags	= req_flags(),
	};
	unsigned long left = umh_deadline();
	struct bpfilter_exit *ex;
	struct mbox_reply reply;
	LIST_HEAD(exits);
	size_t n = 0;
	u64 *cookies;
	int err;

	lockdep_assert_held(&bpfilter_ops.lock);
	bpfilter_exits_take(&exits);
	if (list_empty(&exits))
		return 0;
	list_for_each_entry(ex, &exits, list)
		n++;
	cookies = kvmalloc_array(n, sizeof(*cookies), GFP_KERNEL);
	if (!cookies) {
		bpfilter_exits_return(&exits);
		return 0;	/* next time */
	}
	n = 0;
	list_for_each_entry(ex, &exits, list)
		cookies[n++] = ex->cookie;
	req.len = n * sizeof(*cookies);

	err = umh_request(&req, cookies, &reply, &left);
	if (!err && reply.len)
		err = umh_fail(-EPROTO);
	kvfree(cookies);
	if (err) {
		bpfilter_exits_return(&exits);
		return err;
	}
	if (reply.status)
		pr_warn("bpfilter_umh refused %zu namespace exits: %d\n", n,
			reply.status);
	bpfilter_exits_free(&exits);
	return 0;
}

/*
 * Copies len bytes of the umh's reply to the caller at to, through a bounce
 * page. A failed copy_to_user() does not stop the reading: the reply must
 * be read to its end. Returns whether every byte was copied, or a negative
 * errno if the umh failed.
 */
static int umh_to_user(void __user *to, u32 len, unsigned long *left)
{
	bool copied = true;
	void *page;
	size_t n;
	int err;

	page = (void *)__get_free_page(GFP_KERNEL_ACCOUNT);
	if (!page)
		return -ENOMEM;
	while (len) {
		n = min_t(size_t, len, PAGE_SIZE);
		err = umh_read(page, n, left);
		if (err) {
			free_page((unsigned long)page);
			return umh_fail(err);
		}
		if (copied && copy_to_user(to, page, n))
			copied = false;
		to += n;
		len -= n;
	}
	free_page((unsigned long)page);
	return copied;
}

/*
 * A get's answer: segments of optval to write. Any byte outside optlen is
 * a broken protocol; a failed copy is -EFAULT, as ip_tables' copy_to_user.
 */
static int copy_segments(void __user *optval, unsigned int optlen, u32 len,
			 unsigned long *left)
{
	struct mbox_segment seg;
	bool copied = true;
	int ret;

	while (len) {
		if (len < sizeof(seg))
			return umh_fail(-EPROTO);
		ret = umh_read(&seg, sizeof(seg), left);
		if (ret)
			return umh_fail(ret);
		len -= sizeof(seg);
		if (seg.len > len || seg.off > optlen ||
		    seg.len > optlen - seg.off)
			return umh_fail(-EPROTO);
		ret = umh_to_user(optval + seg.off, seg.len, left);
		if (ret < 0)
			return ret;
		copied = copied && ret;
		len -= seg.len;
	}
	return copied ? 0 : -EFAULT;
}

/*
 * IPT_SO_SET_REPLACE's old counters go where the caller's ipt_replace
 * says. As ip_tables: the table is replaced already, so a failed copy is
 * only a warning.
 */
static int copy_counters(const struct ipt_replace *repl, u32 len,
			 unsigned long *left)
{
	int ret;

	if (len > (u64)repl->num_counters * sizeof(struct xt_counters))
		return umh_fail(-EPROTO);
	ret = umh_to_user(repl->counters, len, left);
	if (ret < 0)
		return ret;
	if (!ret)
		pr_warn("counters copy to user failed while replacing table\n");
	return 0;
}

/*
 * How much of optval a call reads, as ip_tables reads it: the header (which
 * it reads here), and for a set what the header says follows. Where
 * ip_tables refuses the call from optlen or the header alone, or could not
 * allocate what follows, it reads no more: the umh, which gets optlen,
 * refuses the call with ip_tables' errno. So a caller can make the module
 * allocate no more than ip_tables would, and a fault comes where ip_tables
 * meets it. Returns the length, or a negative errno.
 */
static long call_len(int optname, bool is_set, sockptr_t optval,
		     unsigned int optlen)
{
	union {
		struct ipt_replace repl;
		struct xt_counters_info info;
	} h;

	if (!is_set) {
		switch (optname) {
		case IPT_SO_GET_INFO:
			return optlen == sizeof(struct ipt_getinfo) ? optlen : 0;
		case IPT_SO_GET_ENTRIES:
			return optlen >= sizeof(struct ipt_get_entries) ?
			       sizeof(struct ipt_get_entries) : 0;
		case IPT_SO_GET_REVISION_MATCH:
		case IPT_SO_GET_REVISION_TARGET:
			return optlen == sizeof(struct xt_get_revision) ?
			       optlen : 0;
		}
		return 0;
	}
	switch (optname) {
	case IPT_SO_SET_REPLACE:	/* do_replace() */
		if (optlen < sizeof(h.repl))
			return 0;
		if (copy_from_sockptr(&h.repl, optval, sizeof(h.repl)))
			return -EFAULT;
		if (h.repl.num_counters >= INT_MAX / sizeof(struct xt_counters) ||
		    !h.repl.num_counters ||
		    (u64)optlen < (u64)h.repl.size + sizeof(h.repl) ||
		    (u64)h.repl.size + sizeof(struct xt_table_info) >=
		    BPFILTER_MAX_TABLE)
			return sizeof(h.repl);
		return sizeof(h.repl) + h.repl.size;
	case IPT_SO_SET_ADD_COUNTERS:	/* xt_copy_counters() */
		if (optlen <= sizeof(h.info))
			return 0;
		if (copy_from_sockptr(&h.info, optval, sizeof(h.info)))
			return -EFAULT;
		if ((u64)h.info.num_counters * sizeof(struct xt_counters) !=
		    optlen - sizeof(h.info) ||
		    optlen - sizeof(h.info) >= BPFILTER_MAX_TABLE)
			return sizeof(h.info);
		return optlen;
	}
	return 0;
}

/*
 * Whether a call is about the filter table: the calls 64 and 65, get and
 * set alike (IPT_SO_SET_REPLACE and _ADD_COUNTERS share the numbers), start
 * with the table's name. ip_tables makes a table, and names it in
 * /proc/net/ip_tables_names, when one of them first finds it.
 */
static bool names_filter(int optname, const char *buf, unsigned int optlen)
{
	if (optname != IPT_SO_GET_INFO && optname != IPT_SO_GET_ENTRIES)
		return false;
	return optlen >= XT_TABLE_MAXNAMELEN &&
	       !strncmp(buf, "filter", XT_TABLE_MAXNAMELEN);
}

static int process_sockopt(struct sock *sk, int optname, sockptr_t optval,
			   unsigned int optlen, bool is_set)
{
	struct net *net = sock_net(sk);
	struct mbox_request req = {
		.is_set	= is_set,
		.cmd	= optname,
		.pid	= current->pid,
		.flags	= req_flags(),
		.optlen	= optlen,
	};
	unsigned long left;
	struct mbox_reply reply;
	bool filter = false;
	void *buf = NULL;
	long len;
	int err;

	lockdep_assert_held(&bpfilter_ops.lock);
	/* As ip_tables: the socket's namespace decides who may ask. */
	if (!ns_capable(net->user_ns, CAP_NET_ADMIN))
		return -EPERM;
	if (sockptr_is_kernel(optval)) {
		pr_err("sockopt from kernel memory is not supported\n");
		return -EFAULT;
	}
	len = call_len(optname, is_set, optval, optlen);
	if (len < 0)
		return len;
	if (len) {
		/*
		 * Charged to the caller's memory cgroup; beyond its limit
		 * the call fails (ENOMEM) rather than OOM-kill anyone.
		 */
		buf = kvmalloc(len, GFP_KERNEL_ACCOUNT | __GFP_NOWARN |
				    __GFP_RETRY_MAYFAIL);
		if (!buf)
			return -ENOMEM;
		if (copy_from_sockptr(buf, optval, len)) {
			err = -EFAULT;
			goto out;
		}
		filter = names_filter(optname, buf, len);
	}
	req.len = len;

	err = send_exits();
	if (err)
		goto out;

	req.netns = bpfilter_net_known(net);
	left = umh_deadline();
	err = umh_request(&req, buf, &reply, &left);
	if (err)
		goto out;
	err = reply.status;
	if (!reply.len)
		goto out;

	if (!err && !is_set)
		err = copy_segments(optval.user, optlen, reply.len, &left);
	else if (!err && optname == IPT_SO_SET_REPLACE &&
		 len >= sizeof(struct ipt_replace))
		err = copy_counters(buf, reply.len, &left);
	else
		err = umh_fail(-EPROTO);
out:
	if (!err && filter)
		bpfilter_xtname_add(net);
	kvfree(buf);
	return err;
}

/* At init, and when the umh died (the kernel calls it then, as ->start). */
static int start_umh(void)
{
	struct mbox_request req = {
		.cmd	= BPFILTER_CMD_HEALTH,
		.pid	= current->pid,
		.flags	= req_flags(),
	};
	unsigned long left = umh_deadline();
	struct mbox_reply reply;
	int err;

	lockdep_assert_held(&bpfilter_ops.lock);
	err = fork_usermode_driver(&bpfilter_ops.info);
	if (err) {
		pr_err("cannot start bpfilter_umh: %d\n", err);
		return err;
	}
	pr_info("Loaded bpfilter_umh pid %d\n",
		pid_nr(bpfilter_ops.info.tgid));

	/* Only the module's ends: the umh's stay blocking. */
	set_nonblock(bpfilter_ops.info.pipe_to_umh);
	set_nonblock(bpfilter_ops.info.pipe_from_umh);

	err = umh_request(&req, NULL, &reply, &left);
	if (!err && reply.len)
		err = umh_fail(-EPROTO);
	if (!err)
		err = reply.status;
	if (err) {
		pr_err("bpfilter_umh failed its health check (%d), stopped it\n",
		       err);
		shutdown_umh();
		return err;
	}
	return send_exits();
}

static int __init bpfilter_init(void)
{
	int err;

	err = umd_load_blob(&bpfilter_ops.info, bpfilter_umh_start,
			    bpfilter_umh_end - bpfilter_umh_start);
	if (err) {
		pr_err("cannot load the umh blob: %d\n", err);
		return err;
	}

	/* Namespaces and the umh's sockopts first: the umh may use them. */
	err = bpfilter_net_init();
	if (err)
		goto unload;
	err = bpfilter_xtname_init();
	if (err)
		goto fini;

	mutex_lock(&bpfilter_ops.lock);
	err = start_umh();
	if (!err) {
		bpfilter_ops.sockopt = process_sockopt;
		bpfilter_ops.start = start_umh;
	}
	mutex_unlock(&bpfilter_ops.lock);
	if (err)
		goto release;

#ifdef BPFILTER_TEST_INITFAIL
	/* Test build (BPFILTER_TEST=initfail): fail with the hook published. */
	pr_info("test build: init fails now, the sockopt hook published\n");
	err = -ECANCELED;
	goto stop;
#endif

	pr_info("started\n");
	return 0;

#ifdef BPFILTER_TEST_INITFAIL
stop:
#endif
	mutex_lock(&bpfilter_ops.lock);
	bpfilter_ops.start = NULL;
	bpfilter_ops.sockopt = NULL;
	shutdown_umh();
	mutex_unlock(&bpfilter_ops.lock);
release:
	bpfilter_net_release();
	bpfilter_xtname_exit();
	bpfilter_xtext_exit();
fini:
	bpfilter_net_fini();
unload:
	umd_unload_blob(&bpfilter_ops.info);
	return err;
}

static void __exit bpfilter_exit(void)
{
	/* The hooks and programs go first, whatever the umh does. */
	bpfilter_net_release();

	/* The umh holds nothing in the kernel: SIGKILL is a clean stop. */
	mutex_lock(&bpfilter_ops.lock);
	bpfilter_ops.start = NULL;
	bpfilter_ops.sockopt = NULL;
	shutdown_umh();
	mutex_unlock(&bpfilter_ops.lock);

	bpfilter_xtname_exit();
	bpfilter_xtext_exit();
	bpfilter_net_fini();
	umd_unload_blob(&bpfilter_ops.info);
	pr_info("stopped\n");
}

module_init(bpfilter_init);
module_exit(bpfilter_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("iptables through BPF, with a Go usermode helper");
