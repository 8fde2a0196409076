/* The published, read-only copy of the table (see shmfs_proto.h). */
#ifndef SHMFS_PUBTAB_H
#define SHMFS_PUBTAB_H

#include "seg.h"

/* Create the table file under dir; 0 or -errno (then nothing is published). */
int pubtab_open(const char *dir);
void pubtab_close(void);
/* Where it is, or NULL. */
const char *pubtab_path(void);
extern const struct seg_publisher pubtab_publisher;

#endif
