/*
 * FUSE passthrough: a segment file whose opens the kernel serves straight
 * from the segment's own memfd.  libfuse 3.14 has no API for it, so this
 * module speaks the few protocol bits itself through libfuse's custom I/O
 * hooks: it asks for passthrough in the INIT reply when the kernel offers
 * it, registers memfds as backing files, and marks open replies.
 */
#ifndef SHMFS_PASSTHROUGH_H
#define SHMFS_PASSTHROUGH_H

#include "ops.h"

/* Install the I/O hooks on a mounted session; with want false they only
 * pass bytes through and passthrough is never asked for. */
int pt_install(struct fuse_session *se, int fd, int want);
/* From the init callback: INIT's reply, sent next by this thread, asks
 * for passthrough. */
void pt_init(void);
/* Before the session goes: backing ids die with the connection. */
void pt_uninstall(void);
/* Register fd as a backing file: an id > 0, or -errno. */
int pt_backing_open(int fd);
void pt_backing_close(int id);
/* Told of an open the table holds whose recorded reply the kernel
 * refused when resent (its caller died): nothing will release it. */
void pt_on_abandoned(void (*fn)(uint64_t fh));
/* fuse_reply_open for a file the kernel is to serve from backing id. */
int pt_reply_open(fuse_req_t req, const struct fuse_file_info *fi, int id);

#endif
