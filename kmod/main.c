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
#include <net/sock.h>
#include <net/net_namespace.h>

#include "compat.h"
#include "msgfmt.h"
#include "umh_blob.h"

static void shutdown_umh(void)
{
	struct pid *tgid = bpfilter_ops.info.tgid;

	if (!tgid)
		return;
	kill_pid(tgid, SIGKILL, 1);
	wait_event(tgid->wait_pidfd, thread_group_exited(tgid));
	bpfilter_umh_cleanup(&bpfilter_ops.info);
}

/* Called with bpfilter_ops.lock held. */
static int send_req(const struct mbox_request *req)
{
	struct mbox_reply reply;
	loff_t pos = 0;
	ssize_t n;

	if (!bpfilter_ops.info.tgid)
		return -EFAULT;
	n = kernel_write(bpfilter_ops.info.pipe_to_umh, req, sizeof(*req),
			 &pos);
	if (n != sizeof(*req)) {
		pr_err("write to umh failed: %zd\n", n);
		goto stop;
	}
	pos = 0;
	n = kernel_read(bpfilter_ops.info.pipe_from_umh, &reply, sizeof(reply),
			&pos);
	if (n != sizeof(reply)) {
		pr_err("read from umh failed: %zd\n", n);
		goto stop;
	}
	return (int)reply.status;
stop:
	shutdown_umh();
	return -EFAULT;
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
 * one is gone, so that its state does not pile up.
 */
static void __net_exit bpfilter_net_exit(struct net *net)
{
	struct mbox_request req = {
		.is_set	= 1,
		.cmd	= BPFILTER_CMD_NETNS_EXIT,
		.netns	= net->ns.inum,
	};

	mutex_lock(&bpfilter_ops.lock);
	if (bpfilter_ops.info.tgid)
		send_req(&req);
	mutex_unlock(&bpfilter_ops.lock);
}

static struct pernet_operations bpfilter_net_ops = {
	.exit = bpfilter_net_exit,
};

/* Called with bpfilter_ops.lock held, at init and when the umh died. */
static int start_umh(void)
{
	struct mbox_request req = {
		.cmd	= BPFILTER_CMD_HEALTH,
		.pid	= current->pid,
	};
	int err;

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

	mutex_lock(&bpfilter_ops.lock);
	err = start_umh();
	if (!err) {
		bpfilter_ops.sockopt = process_sockopt;
		bpfilter_ops.start = start_umh;
	}
	mutex_unlock(&bpfilter_ops.lock);
	if (err)
		goto unload;

	err = register_pernet_subsys(&bpfilter_net_ops);
	if (err) {
		pr_err("cannot register for namespace exits: %d\n", err);
		goto stop;
	}
	pr_info("started\n");
	return 0;

stop:
	mutex_lock(&bpfilter_ops.lock);
	shutdown_umh();
	bpfilter_ops.start = NULL;
	bpfilter_ops.sockopt = NULL;
	mutex_unlock(&bpfilter_ops.lock);
unload:
	umd_unload_blob(&bpfilter_ops.info);
	return err;
}

static void __exit bpfilter_exit(void)
{
	/* The umh is going away with all its state: nothing to tell it. */
	mutex_lock(&bpfilter_ops.lock);
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
