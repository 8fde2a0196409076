/* The names of the namespace: keys and shmids as directory entries. */
#ifndef SHMFS_NAMES_H
#define SHMFS_NAMES_H

#include <stdbool.h>
#include <sys/types.h>

/* Exactly "0x" and eight lowercase hex digits: one name per key. */
bool names_parse_key(const char *name, key_t *key);
/* A shmid in canonical decimal: digits only, no leading zero, <= INT_MAX. */
bool names_parse_shmid(const char *name, int *id);

#endif
