/* SPDX-License-Identifier: MIT */
/* cli/cmd_avatar.c: `lipsync avatar import|info`. import turns a video plus crop rects (or
 * landmarks) and a UNet into the canonical avatar layout of DATA.md (the work is in
 * media/avatar_import.c); info reads an avatar directory back and checks that its parts agree
 * (avatar.yaml, the frame files, crop_rects.json). */
#include "cli/cli.h"
#include "core/core.h"
#include "media/media.h"

#include <dirent.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <yaml.h>

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: lipsync avatar import --video V.mp4 (--rects crop_rects.json | --landmarks DIR)\n"
        "                             --unet model.onnx --out DIR [--id ID] [--quality 90]\n"
        "       lipsync avatar info DIR\n\n"
        "import  extracts every frame of a 25 fps video to DIR/frames/000000.jpg ... (JPEG at\n"
        "        --quality), checks one crop rect per frame (inside the frame, non-empty),\n"
        "        copies the UNet to DIR/unet.onnx and writes DIR/crop_rects.json and\n"
        "        DIR/avatar.yaml. --rects takes a JSON array of [x1,y1,x2,y2] or the keyed\n"
        "        form {\"0\": {\"rect\": [...]}, ...}; --landmarks takes a directory of\n"
        "        <i>.lms files (110 lines of 'x y'). --id defaults to DIR's last component.\n"
        "        DIR must not exist (or be empty); it appears only when the import succeeds.\n"
        "info    prints avatar.yaml, the frame files and a crop rect summary, and exits 1 if\n"
        "        they disagree.\n");
}

struct progress {
    double last_ms;
    bool shown;
};

static void on_progress(void *ctx, int64_t done, int64_t total)
{
    struct progress *p = ctx;
    double now = lip_time_ms();
    if (now - p->last_ms < 200 && done != total) return; /* a few updates a second is enough */
    p->last_ms = now;
    p->shown = true;
    if (total > 0)
        fprintf(stderr, "\rimporting: frame %lld/%lld (%d%%)", (long long)done, (long long)total,
                (int)(100 * done / total));
    else
        fprintf(stderr, "\rimporting: frame %lld", (long long)done);
    fflush(stderr);
}

static int cmd_import(int argc, char **argv)
{
    lip_media_import_opts o = lip_media_import_opts_default();
    static const struct option lo[] = {
        {"video", required_argument, 0, 'v'},     {"rects", required_argument, 0, 'r'},
        {"landmarks", required_argument, 0, 'l'}, {"unet", required_argument, 0, 'u'},
        {"out", required_argument, 0, 'o'},       {"id", required_argument, 0, 'i'},
        {"quality", required_argument, 0, 'q'},   {0, 0, 0, 0}};
    optind = 1;
    int c;
    long q;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'v':
            o.video = optarg;
            break;
        case 'r':
            o.rects = optarg;
            break;
        case 'l':
            o.landmarks = optarg;
            break;
        case 'u':
            o.unet = optarg;
            break;
        case 'o':
            o.out = optarg;
            break;
        case 'i':
            o.id = optarg;
            break;
        case 'q':
            if (lip_parse_long(optarg, 1, 100, &q) != 0) {
                lip_cli_fail("avatar", "--quality takes 1..100, not '%s'", optarg);
                return 2;
            }
            o.quality = (int)q;
            break;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        lip_cli_fail("avatar", "unexpected argument '%s'", argv[optind]);
        return 2;
    }
    if (!o.video || !o.unet || !o.out || (!o.rects == !o.landmarks)) {
        lip_cli_fail("avatar", "import needs --video, --unet, --out and one of --rects or "
                               "--landmarks");
        usage(stderr);
        return 2;
    }
    struct progress p = {0};
    if (lip_cli_tty()) {
        o.progress = on_progress;
        o.progress_ctx = &p;
    }
    lip_err err = {0};
    int64_t frames = 0;
    double t0 = lip_time_ms();
    int rc = lip_media_import_avatar(&o, &frames, &err);
    if (p.shown) fprintf(stderr, "\n");
    if (rc) {
        lip_cli_fail("avatar", "import failed: %s", err.msg);
        return 1;
    }
    printf("imported %lld frames into %s in %.1f s\n", (long long)frames, o.out,
           (lip_time_ms() - t0) / 1e3);
    return 0;
}

/* avatar.yaml is a flat mapping of scalars; print it and keep the few keys info checks. */
static int read_yaml(const char *path, long *frame_count, long *width, long *height, lip_err *err)
{
    uint8_t *data;
    size_t len;
    int rc = lip_file_read(path, 1u << 20, &data, &len, err);
    if (rc) return rc;
    yaml_parser_t yp;
    yaml_event_t ev;
    if (!yaml_parser_initialize(&yp)) {
        lip_free(data);
        return lip_err_set(err, LIP_ENOMEM, "out of memory (YAML parser)");
    }
    yaml_parser_set_input_string(&yp, data, len);
    char key[128] = "";
    bool have_key = false, done = false;
    int depth = 0;
    while (!done && !rc) {
        if (!yaml_parser_parse(&yp, &ev)) {
            rc = lip_err_set(err, LIP_EFORMAT, "%s: line %zu: %s", path, yp.problem_mark.line + 1,
                             yp.problem ? yp.problem : "bad YAML");
            break;
        }
        switch (ev.type) {
        case YAML_MAPPING_START_EVENT:
        case YAML_SEQUENCE_START_EVENT:
            depth++;
            break;
        case YAML_MAPPING_END_EVENT:
        case YAML_SEQUENCE_END_EVENT:
            depth--;
            break;
        case YAML_SCALAR_EVENT:
            if (depth != 1) break;
            if (!have_key) {
                lip_strlcpy(key, (const char *)ev.data.scalar.value, sizeof key);
                have_key = true;
            } else {
                const char *v = (const char *)ev.data.scalar.value;
                printf("  %-15s %s\n", key, v);
                long *dst = strcmp(key, "frame_count") == 0 ? frame_count
                            : strcmp(key, "width") == 0     ? width
                            : strcmp(key, "height") == 0    ? height
                                                            : NULL;
                if (dst && lip_parse_long(v, 0, 1000000000, dst) != 0)
                    rc = lip_err_set(err, LIP_EFORMAT, "%s: %s is '%s', expected an integer", path,
                                     key, v);
                have_key = false;
            }
            break;
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&yp);
    lip_free(data);
    return rc;
}

/* Counts frames/NNNNNN.jpg|png and checks they run 0..n-1 without gaps. */
static long count_frames(const char *dir, long *first_gap)
{
    DIR *d = opendir(dir);
    *first_gap = -1;
    if (!d) return -1;
    long n = 0, max = -1;
    for (struct dirent *e; (e = readdir(d));) {
        const char *s = e->d_name;
        size_t l = strlen(s);
        if (l < 5) continue;
        const char *ext = s + l - 4;
        if (strcmp(ext, ".jpg") && strcmp(ext, ".png")) continue;
        char num[32];
        if (l - 4 >= sizeof num) continue;
        memcpy(num, s, l - 4);
        num[l - 4] = 0;
        long k;
        if (lip_parse_long(num, 0, 100000000, &k) != 0) continue;
        n++;
        if (k > max) max = k;
    }
    closedir(d);
    if (max + 1 != n) *first_gap = max + 1; /* some index in 0..max is missing (or duplicated) */
    return n;
}

static int cmd_info(int argc, char **argv)
{
    if (argc != 2) {
        usage(stderr);
        return 2;
    }
    const char *dir = argv[1];
    char path[4096];
    lip_err err = {0};
    long fc = -1, W = -1, H = -1;
    int problems = 0;
    printf("%s\n", dir);
    if (lip_path_join(path, sizeof path, dir, "avatar.yaml", &err) ||
        read_yaml(path, &fc, &W, &H, &err)) {
        lip_cli_fail("avatar", "%s", err.msg);
        return 1;
    }
    snprintf(path, sizeof path, "%s/frames", dir);
    long gap;
    long nfiles = count_frames(path, &gap);
    if (nfiles < 0) {
        printf("  frames:         missing directory %s\n", path);
        problems++;
    } else {
        printf("  frame files:    %ld%s\n", nfiles, gap >= 0 ? " (numbering has gaps)" : "");
        if (gap >= 0) problems++;
        if (fc >= 0 && nfiles != fc) {
            printf("  problem:        avatar.yaml says %ld frames, frames/ holds %ld\n", fc,
                   nfiles);
            problems++;
        }
    }
    snprintf(path, sizeof path, "%s/unet.onnx", dir);
    struct stat st;
    if (stat(path, &st) == 0) {
        printf("  unet.onnx:      %lld bytes\n", (long long)st.st_size);
    } else {
        printf("  unet.onnx:      missing\n");
        problems++;
    }
    snprintf(path, sizeof path, "%s/crop_rects.json", dir);
    lip_media_rect *r = NULL;
    size_t nr = 0;
    if (lip_media_rects_load_json(path, &r, &nr, &err)) {
        printf("  crop rects:     %s\n", err.msg);
        problems++;
    } else {
        int smin = 1 << 30, smax = 0;
        lip_media_rect u = r[0];
        for (size_t i = 0; i < nr; i++) {
            int side = LIP_MAX(r[i].x2 - r[i].x1, r[i].y2 - r[i].y1);
            smin = LIP_MIN(smin, side);
            smax = LIP_MAX(smax, side);
            u.x1 = LIP_MIN(u.x1, r[i].x1);
            u.y1 = LIP_MIN(u.y1, r[i].y1);
            u.x2 = LIP_MAX(u.x2, r[i].x2);
            u.y2 = LIP_MAX(u.y2, r[i].y2);
            if (W > 0 && H > 0 && lip_media_rect_check(&r[i], i, (int)W, (int)H, &err)) {
                if (problems < 10) printf("  problem:        %s\n", err.msg);
                problems++;
            }
        }
        printf("  crop rects:     %zu, side %d..%d px, union [%d, %d, %d, %d]\n", nr, smin, smax,
               u.x1, u.y1, u.x2, u.y2);
        if (fc >= 0 && (long)nr < fc) {
            printf("  problem:        %zu crop rects for %ld frames\n", nr, fc);
            problems++;
        }
        lip_free(r);
    }
    if (problems) {
        printf("  %d problem%s\n", problems, problems == 1 ? "" : "s");
        return 1;
    }
    printf("  ok\n");
    return 0;
}

int lip_cli_avatar(int argc, char **argv)
{
    if (argc < 2 || lip_cli_wants_help(argc, argv)) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "import") == 0) return cmd_import(argc - 1, argv + 1);
    if (strcmp(argv[1], "info") == 0) return cmd_info(argc - 1, argv + 1);
    lip_cli_fail("avatar", "unknown subcommand '%s' (import, info)", argv[1]);
    return 2;
}
