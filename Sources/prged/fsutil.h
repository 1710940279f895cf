/* Durable file-system steps the library does not do for us. */
#ifndef PRGED_FSUTIL_H
#define PRGED_FSUTIL_H

/* fsyncs the directory that holds `path`, so a file created or renamed there survives a
 * power cut. Returns 0 or -1 (errno set). */
int fsync_parent_dir(const char *path);

/* mkdir -p with mode 0700 for each missing component, fsyncing each new directory's parent.
 * Returns 0 or -1 (errno set). */
int mkdir_durable(const char *path);

#endif
