/* SPDX-License-Identifier: MIT */
/* fuzz_rects: lip_avatar_read_rects (the crop-rect JSON of an avatar package, both the array
 * and the keyed form). The reader takes a path, so each input is written to a memfd and read
 * back through /proc/self/fd: no files are left behind and nothing touches the disk. */
#include "avatar/avatar.h"
#include "fuzz.h"

#include <sys/mman.h>
#include <unistd.h>

FUZZ_QUIET_INIT

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("rects.json", 0);
    if (fd < 0) abort();
    size_t off = 0;
    while (off < size) {
        ssize_t w = write(fd, data + off, size - off);
        if (w <= 0) abort();
        off += (size_t)w;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    int *rects = NULL, count = -1;
    lip_err e = {0};
    int rc = lip_avatar_read_rects(path, &rects, &count, &e);
    fuzz_check_err(rc, &e, "lip_avatar_read_rects");
    if (rc == 0) {
        if (count < 0 || (count > 0 && !rects)) abort();
        volatile long acc = 0;
        for (int i = 0; i < count * 4; i++) acc += rects[i];
        (void)acc;
    }
    lip_free(rects);
    close(fd);
    return 0;
}
