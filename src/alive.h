/*
 * The published table's keeper word (struct shmfs_table.alive): a robust
 * futex the kernel marks FUTEX_OWNER_DIED when the thread holding it
 * dies, however it dies, so that a reader of the table learns of the
 * keeper's death without a system call.
 */
#ifndef SHMFS_ALIVE_H
#define SHMFS_ALIVE_H

#include <stdint.h>

/* The calling thread holds *word (its TID goes in) until it dies; this
 * replaces the thread's robust list, so the thread must take no robust
 * mutex.  0, or -errno. */
int alive_hold(uint32_t *word);

/* A thread of the daemon's own holds *word until the process dies. */
int alive_hold_thread(uint32_t *word);

/* The holder (a process of one thread): the table it keeps alive, mapped
 * at the first tick that finds it (path: table.<its pid>). */
void alive_holder_tick(const char *dir);

#endif
