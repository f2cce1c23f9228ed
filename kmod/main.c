// SPDX-License-Identifier: GPL-2.0
/*
 * bpfilter.ko: starts the usermode helper embedded in this module, checks
 * that it answers, and forwards the iptables get/setsockopt calls that the
 * kernel's bpfilter hooks hand us to it over two pipes. Everything else
 * happens in the helper.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/init.h>
#include <linux/capability.h>
#include <linux/fs.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/netdevice.h>
#include <linux/slab.h>
#include <linux/workqueue.h>
#include <net/sock.h>
#include <net/net_namespace.h>

#include "compat.h"
#include "msgfmt.h"
#include "umh_blob.h"

/*
 * A request whose reply the umh still owes: its caller was killed while
 * waiting. The reply is read (and dropped) before the next request, so
 * that no caller ever gets another one's answer. bpfilter_ops.lock
 * guards it, as everything in bpfilter_ops.
 */
static bool reply_owed;

static void shutdown_umh(void)
{
	struct pid *tgid = bpfilter_ops.info.tgid;

	lockdep_assert_held(&bpfilter_ops.lock);
	if (!tgid)
		return;
	kill_pid(tgid, SIGKILL, 1);
	wait_event(tgid->wait_pidfd, thread_group_exited(tgid));
	bpfilter_umh_cleanup(&bpfilter_ops.info);
	reply_owed = false;
}

static int start_umh(void);

/*
 * Whether a umh runs, starting one if the last one died (as the kernel
 * does before a sockopt call). A restarted umh takes back the state its
 * predecessor left.
 */
static bool umh_alive(void)
{
	lockdep_assert_held(&bpfilter_ops.lock);
	if (bpfilter_ops.info.tgid &&
	    thread_group_exited(bpfilter_ops.info.tgid))
		shutdown_umh();
	if (!bpfilter_ops.info.tgid && start_umh())
		return false;
	return true;
}

static int read_reply(struct mbox_reply *reply)
{
	loff_t pos = 0;
	ssize_t n;

	n = kernel_read(bpfilter_ops.info.pipe_from_umh, reply, sizeof(*reply),
			&pos);
	if (n == sizeof(*reply))
		return 0;
	if (n == -ERESTARTSYS || n == -EINTR)
		return -EINTR;
	pr_err("read from umh failed: %zd\n", n);
	return -EPIPE;
}

/*
 * One request, one reply. The pipes wait interruptibly: every signal but
 * SIGKILL is blocked meanwhile, so that a signal to the caller neither
 * cuts a call short nor is taken for a dead umh; it is delivered when the
 * call returns. Not in a kernel thread (a namespace exit, the notifier's
 * work): it ignores signals, but not blocked ones, so the SIGPIPE of a
 * write to a dead umh would stay pending on that worker for good, and
 * every fork from it (a umh start) would fail. Only a broken pipe stops
 * the umh (the kernel starts a new one on the next call).
 */
static int send_req(const struct mbox_request *req)
{
	bool user = !(current->flags & PF_KTHREAD);
	struct mbox_reply reply;
	sigset_t blocked, saved;
	loff_t pos = 0;
	ssize_t n;
	int err;

	lockdep_assert_held(&bpfilter_ops.lock);
	if (!bpfilter_ops.info.tgid)
		return -EFAULT;

	if (user) {
		siginitsetinv(&blocked, sigmask(SIGKILL));
		sigprocmask(SIG_BLOCK, &blocked, &saved);
	}

	if (reply_owed) {
		err = read_reply(&reply);
		if (err)
			goto out;
		reply_owed = false;
	}

	n = kernel_write(bpfilter_ops.info.pipe_to_umh, req, sizeof(*req),
			 &pos);
	if (n == -ERESTARTSYS || n == -EINTR) {
		err = -EINTR;	/* killed: nothing was written */
		goto out;
	}
	if (n != sizeof(*req)) {
		pr_err("write to umh failed: %zd\n", n);
		err = -EPIPE;
		goto out;
	}

	err = read_reply(&reply);
	if (err == -EINTR)
		reply_owed = true;	/* killed while the umh works */
	else if (!err)
		err = (int)reply.status;
out:
	if (user)
		sigprocmask(SIG_SETMASK, &saved, NULL);
	if (err == -EPIPE) {
		shutdown_umh();
		err = -EFAULT;
	}
	return err;
}

/*
 * bpfilter.trace=1 (or 1 in /sys/module/bpfilter/parameters/trace): the
 * umh logs every forwarded call, for developers. Off, it logs only what an
 * admin needs (refusals, failures, start and stop).
 */
static bool trace;
module_param(trace, bool, 0644);
MODULE_PARM_DESC(trace, "log every forwarded sockopt call in the kernel log");

/* The flags of every request: the module's own ones are traced too. */
static u32 req_flags(void)
{
	return READ_ONCE(trace) ? BPFILTER_REQ_TRACE : 0;
}

static int process_sockopt(struct sock *sk, int optname, sockptr_t optval,
			   unsigned int optlen, bool is_set)
{
	struct net *net = sock_net(sk);
	struct mbox_request req = {
		.addr	= (uintptr_t)optval.user,
		.len	= optlen,
		.is_set	= is_set,
		.cmd	= optname,
		.pid	= current->pid,
		.netns	= net->ns.inum,
		.flags	= req_flags(),
	};

	/* As ip_tables: the socket's namespace decides who may ask. */
	if (!ns_capable(net->user_ns, CAP_NET_ADMIN))
		return -EPERM;
	if (sockptr_is_kernel(optval)) {
		pr_err("sockopt from kernel memory is not supported\n");
		return -EFAULT;
	}
	return send_req(&req);
}

/*
 * Like ip_tables, the umh keeps tables per network namespace: tell it when
 * one is gone, so that its state does not pile up. A dead umh is started
 * again for that (unless the module is not, or no longer, serving calls):
 * the namespace's inode number, by which the umh knows it, is freed after
 * this, and a new namespace may get it before anything else starts a umh,
 * which would then take the dead namespace's table for the new one's.
 */
static void __net_exit bpfilter_net_exit(struct net *net)
{
	struct mbox_request req = {
		.is_set	= 1,
		.cmd	= BPFILTER_CMD_NETNS_EXIT,
		.netns	= net->ns.inum,
		.flags	= req_flags(),
	};

	mutex_lock(&bpfilter_ops.lock);
	if (bpfilter_ops.start && umh_alive())
		send_req(&req);
	mutex_unlock(&bpfilter_ops.lock);
}

static struct pernet_operations bpfilter_net_ops = {
	.exit = bpfilter_net_exit,
};

/*
 * New interfaces need the umh's filters too, and it follows renames and
 * removals. The notifier runs under RTNL, which the umh needs to attach:
 * it only queues the namespace, and a work item tells the umh, starting it
 * again if it died.
 */
struct netdev_event {
	struct list_head list;
	u32 netns;
};

static LIST_HEAD(netdev_events);
static DEFINE_SPINLOCK(netdev_events_lock);

static void netdev_work_fn(struct work_struct *work)
{
	struct mbox_request req = {
		.is_set	= 1,
		.cmd	= BPFILTER_CMD_NETDEV,
		.flags	= req_flags(),
	};
	struct netdev_event *ev;

	for (;;) {
		spin_lock(&netdev_events_lock);
		ev = list_first_entry_or_null(&netdev_events,
					      struct netdev_event, list);
		if (ev)
			list_del(&ev->list);
		spin_unlock(&netdev_events_lock);
		if (!ev)
			return;

		req.netns = ev->netns;
		kfree(ev);
		mutex_lock(&bpfilter_ops.lock);
		if (bpfilter_ops.start && umh_alive())
			send_req(&req);
		mutex_unlock(&bpfilter_ops.lock);
	}
}

static DECLARE_WORK(netdev_work, netdev_work_fn);

static int bpfilter_netdev_event(struct notifier_block *nb,
				 unsigned long event, void *ptr)
{
	struct net_device *dev = netdev_notifier_info_to_dev(ptr);
	u32 netns = dev_net(dev)->ns.inum;
	struct netdev_event *ev;

	/*
	 * An unregister is reported too, so that the umh forgets the device
	 * before another one can come with its ifindex (a device moved in
	 * from another namespace keeps its ifindex).
	 */
	if (event != NETDEV_REGISTER && event != NETDEV_CHANGENAME &&
	    event != NETDEV_UNREGISTER)
		return NOTIFY_DONE;

	spin_lock(&netdev_events_lock);
	list_for_each_entry(ev, &netdev_events, list) {
		if (ev->netns == netns)
			goto queued;
	}
	ev = kmalloc(sizeof(*ev), GFP_ATOMIC);
	if (!ev) {
		spin_unlock(&netdev_events_lock);
		pr_warn("no memory to report a change of %s to the umh\n",
			dev->name);
		return NOTIFY_DONE;
	}
	ev->netns = netns;
	list_add_tail(&ev->list, &netdev_events);
queued:
	spin_unlock(&netdev_events_lock);
	schedule_work(&netdev_work);
	return NOTIFY_DONE;
}

static struct notifier_block bpfilter_netdev_nb = {
	.notifier_call = bpfilter_netdev_event,
};

/* After unregistering the notifier: nothing queues any more. */
static void drop_netdev_events(void)
{
	struct netdev_event *ev, *tmp;

	flush_work(&netdev_work);
	list_for_each_entry_safe(ev, tmp, &netdev_events, list) {
		list_del(&ev->list);
		kfree(ev);
	}
}

/* At init, and when the umh died (the kernel calls it then, as ->start). */
static int start_umh(void)
{
	struct mbox_request req = {
		.cmd	= BPFILTER_CMD_HEALTH,
		.pid	= current->pid,
		.flags	= req_flags(),
	};
	int err;

	lockdep_assert_held(&bpfilter_ops.lock);
	reply_owed = false;	/* a new umh owes nothing */
	err = fork_usermode_driver(&bpfilter_ops.info);
	if (err) {
		pr_err("cannot start bpfilter_umh: %d\n", err);
		return err;
	}
	pr_info("Loaded bpfilter_umh pid %d\n",
		pid_nr(bpfilter_ops.info.tgid));

	err = send_req(&req);
	if (err) {
		pr_err("bpfilter_umh failed its health check (%d), stopped it\n",
		       err);
		shutdown_umh();
		return err < 0 ? err : -EPROTO;
	}
	return 0;
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

	/* Before the umh: a namespace exit meets no umh yet and says nothing. */
	err = register_pernet_subsys(&bpfilter_net_ops);
	if (err) {
		pr_err("cannot register for namespace exits: %d\n", err);
		goto unload;
	}

	mutex_lock(&bpfilter_ops.lock);
	err = start_umh();
	if (!err) {
		bpfilter_ops.sockopt = process_sockopt;
		bpfilter_ops.start = start_umh;
	}
	mutex_unlock(&bpfilter_ops.lock);
	if (err)
		goto unregister;

#ifdef BPFILTER_TEST_INITFAIL
	/* Test build (BPFILTER_TEST=initfail): fail with the hook published. */
	pr_info("test build: init fails now, the sockopt hook published\n");
	err = -ECANCELED;
	goto stop;
#endif

	/* Replays NETDEV_REGISTER for every existing interface. */
	err = register_netdevice_notifier(&bpfilter_netdev_nb);
	if (err) {
		pr_err("cannot register for interface events: %d\n", err);
		goto stop;
	}

	pr_info("started\n");
	return 0;

stop:
	drop_netdev_events();
	mutex_lock(&bpfilter_ops.lock);
	shutdown_umh();
	bpfilter_ops.start = NULL;
	bpfilter_ops.sockopt = NULL;
	mutex_unlock(&bpfilter_ops.lock);
unregister:
	unregister_pernet_subsys(&bpfilter_net_ops);
unload:
	umd_unload_blob(&bpfilter_ops.info);
	return err;
}

static void __exit bpfilter_exit(void)
{
	struct mbox_request req = {
		.is_set	= 1,
		.cmd	= BPFILTER_CMD_SHUTDOWN,
		.flags	= req_flags(),
	};
	int err = -ESRCH;

	unregister_netdevice_notifier(&bpfilter_netdev_nb);
	drop_netdev_events();

	/*
	 * The umh removes every program and map it made (a dead one is
	 * started again for that: it finds its predecessor's), then goes,
	 * with all its state: the namespace exits that unregistering
	 * reports then meet no umh to tell.
	 */
	mutex_lock(&bpfilter_ops.lock);
	if (umh_alive())
		err = send_req(&req);
	if (err)
		pr_err("bpfilter_umh failed to remove its programs (%d): some may remain\n",
		       err);
	shutdown_umh();
	bpfilter_ops.start = NULL;
	bpfilter_ops.sockopt = NULL;
	mutex_unlock(&bpfilter_ops.lock);

	unregister_pernet_subsys(&bpfilter_net_ops);
	umd_unload_blob(&bpfilter_ops.info);
	pr_info("stopped\n");
}

module_init(bpfilter_init);
module_exit(bpfilter_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("iptables through BPF, with a Go usermode helper");
