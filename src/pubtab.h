/* The published, read-only copy of the table (see shmfs_proto.h). */
#ifndef SHMFS_PUBTAB_H
#define SHMFS_PUBTAB_H

/* Where daemons publish their tables: table.<pid of daemon_pid>. */
#define SHMFS_TABLE_DIR "/run/shmfs"

#include <sys/types.h>

#include "seg.h"

/* Create the table file under dir, whose readers follow the life of
 * process owner (the holder, or the daemon itself); 0 or -errno (then
 * nothing is published). */
int pubtab_open(const char *dir, pid_t owner);
/* A successor: the file its holder's first server made (made anew by
 * seg_republish). */
int pubtab_adopt(const char *dir, pid_t owner);
void pubtab_close(void);
/* Where it is, or NULL. */
const char *pubtab_path(void);
extern const struct seg_publisher pubtab_publisher;

#endif
