#define _GNU_SOURCE /* O_CLOEXEC, fdatasync */
#include "journal.h"

#include "fsutil.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

static const char MAGIC[8] = {'P', 'R', 'G', 'E', 'J', 'R', 'N', '1'};
#define RECORD_HEADER 8

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

static uint32_t crc32_update(uint32_t crc, const void *data, size_t len) {
    pthread_once(&crc_once, crc_init);
    const unsigned char *p = data;
    crc = ~crc;
    while (len--) crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Reads exactly len bytes at offset; returns the count read (short only at end of file). */
static ssize_t read_at(int fd, void *buf, size_t len, uint64_t off) {
    size_t got = 0;
    while (got < len) {
        ssize_t r = pread(fd, (char *)buf + got, len - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

static int write_all(int fd, struct iovec *iov, int iovcnt) {
    while (iovcnt > 0) {
        ssize_t w = writev(fd, iov, iovcnt);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return -1;
        while (iovcnt > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

/* Replays records from just after the header; returns the end of the last valid one or -1. */
static int64_t replay(struct journal *j, uint64_t file_size, uint64_t max_record,
                      journal_replay_fn fn, void *ctx, char *err, size_t errlen) {
    uint64_t off = sizeof MAGIC;
    char *buf = NULL;
    while (off + RECORD_HEADER <= file_size) {
        unsigned char h[RECORD_HEADER];
        if (read_at(j->fd, h, sizeof h, off) != (ssize_t)sizeof h) break;
        uint32_t len = get_u32(h), crc = get_u32(h + 4);
        /* A payload holds the split byte and at least one line. */
        if (len < 2 || len > max_record + 1 || off + RECORD_HEADER + len > file_size) break;
        char *nb = realloc(buf, len);
        if (!nb) {
            free(buf);
            snprintf(err, errlen, "out of memory reading the journal");
            return -1;
        }
        buf = nb;
        if (read_at(j->fd, buf, len, off + RECORD_HEADER) != (ssize_t)len) break;
        if (crc32_update(0, buf, len) != crc) break;
        int32_t split = (unsigned char)buf[0];
        if (fn(off, split, buf + 1, len - 1, ctx) != 0) {
            free(buf);
            snprintf(err, errlen, "record %llu at byte %llu was rejected (see the log)",
                     (unsigned long long)j->n_records, (unsigned long long)off);
            return -1;
        }
        j->n_records++;
        off += RECORD_HEADER + len;
    }
    free(buf);
    return (int64_t)off;
}

int journal_open(struct journal *j, const char *path, uint64_t max_record, journal_replay_fn fn,
                 void *ctx, char *err, size_t errlen) {
    memset(j, 0, sizeof *j);
    j->fd = -1;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    j->fd = fd;
    struct stat st;
    if (fstat(fd, &st) < 0) goto io_error;
    uint64_t file_size = (uint64_t)st.st_size;
    if (file_size < sizeof MAGIC) {
        /* New, or torn while its header was written: nothing in it was ever acknowledged. */
        struct iovec iov = {(void *)MAGIC, sizeof MAGIC};
        if (ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0 ||
            write_all(fd, &iov, 1) < 0 || fsync(fd) < 0 || fsync_parent_dir(path) < 0)
            goto io_error;
        j->size = sizeof MAGIC;
        return 0;
    }
    char magic[sizeof MAGIC];
    if (read_at(fd, magic, sizeof magic, 0) != (ssize_t)sizeof magic) goto io_error;
    if (memcmp(magic, MAGIC, sizeof MAGIC) != 0) {
        snprintf(err, errlen, "%s: not a prged journal (bad magic)", path);
        goto fail;
    }
    int64_t end = replay(j, file_size, max_record, fn, ctx, err, errlen);
    if (end < 0) goto fail;
    if ((uint64_t)end < file_size) {
        log_warn("%s: dropping %llu bytes after the last valid record at byte %lld (a write torn by a crash)",
                 path, (unsigned long long)(file_size - (uint64_t)end), (long long)end);
        if (ftruncate(fd, end) < 0 || fsync(fd) < 0) goto io_error;
    }
    j->size = (uint64_t)end;
    if (lseek(fd, end, SEEK_SET) < 0) goto io_error;
    return 0;
io_error:
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
fail:
    close(fd);
    j->fd = -1;
    return -1;
}

int journal_append(struct journal *j, int32_t split, const char *jsonl, size_t len, char *err,
                   size_t errlen) {
    if (len == 0 || len + 1 > UINT32_MAX) {
        snprintf(err, errlen, "journal record of %zu bytes", len);
        return -1;
    }
    unsigned char h[RECORD_HEADER + 1];
    unsigned char s = (unsigned char)split;
    uint32_t crc = crc32_update(crc32_update(0, &s, 1), jsonl, len);
    put_u32(h, (uint32_t)(len + 1));
    put_u32(h + 4, crc);
    h[RECORD_HEADER] = s;
    struct iovec iov[2] = {{h, sizeof h}, {(void *)jsonl, len}};
    if (lseek(j->fd, (off_t)j->size, SEEK_SET) < 0 || write_all(j->fd, iov, 2) < 0 ||
        fdatasync(j->fd) < 0) {
        snprintf(err, errlen, "journal write failed: %s", strerror(errno));
        /* Best effort: the next append starts at j->size anyway, and a later open would drop
         * a half record as a torn tail. */
        if (ftruncate(j->fd, (off_t)j->size) == 0) fdatasync(j->fd);
        return -1;
    }
    j->size += RECORD_HEADER + 1 + len;
    j->n_records++;
    return 0;
}

void journal_close(struct journal *j) {
    if (j->fd >= 0) close(j->fd);
    j->fd = -1;
}
