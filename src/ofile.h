/*
 * Open files by id (fi->fh): a request finds its file here and holds it
 * until it is done, so that RELEASE never frees a file under a READ.
 */
#ifndef SHMFS_OFILE_H
#define SHMFS_OFILE_H

#include <stdint.h>

#include "ops.h"
#include "seg.h"

enum ofile_kind { OF_CTL, OF_STATUS, OF_SEG };

struct ofile {
	enum ofile_kind kind;
	struct seg_handle *h;
	struct seg_status *status; /* a cursor, not a copy of the table */
	uint64_t id; /* fi->fh */
	unsigned refs; /* the open, and each request using it */
	struct ofile *next; /* in its registry bucket */
};

/* The new file's id, for fi->fh; the registry holds it until RELEASE. */
uint64_t ofile_register(struct ofile *of);
/* The open file of a request (NULL after its RELEASE), held... */
struct ofile *ofile_get(struct fuse_file_info *fi);
/* ...until it is put back. */
void ofile_put(struct ofile *of);
void ofile_putp(struct ofile **of);
/* RELEASE: the id goes now, the file with its last user. */
void ofile_unregister(uint64_t id);
/* At destroy no request runs any more: free every file left. */
void ofile_free_all(void);

/* The open file of a request, held until the end of the block. */
#define OFILE_GET(of, fi) \
	struct ofile *of __attribute__((cleanup(ofile_putp))) = ofile_get(fi)

#endif
