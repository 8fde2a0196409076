/* spike/tsrv.h: the stats page tsrv shares with the experiments. */
#ifndef TSRV_H
#define TSRV_H
#include <stdint.h>

#define TSRV_MAXOP 64

struct tsrv_stats {
	int32_t server_pid;
	uint32_t init_flags, init_flags2, init_minor;
	uint32_t ops[TSRV_MAXOP]; /* requests seen, by opcode */
	uint32_t flushes_done; /* FLUSHes answered (bumped before the reply) */
	uint32_t last_flush_pid;
	uint64_t last_flush_node;
	uint64_t last_flush_owner; /* fuse_flush_in.lock_owner */
	uint64_t last_ioctl_node;
	uint32_t last_ioctl_cmd;
	uint32_t open_errors;
	int32_t uring_register_result; /* cqe res of the REGISTER, or -errno */
	int32_t uring_stage; /* how far uring.c got */
	char uring_note[256];
};

#endif
