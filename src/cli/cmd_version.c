/* SPDX-License-Identifier: MIT */
/* cli/cmd_version.c: `lipsync version`: our version and those of every library we link. */
#include "cli/cli.h"
#include "core/core.h"
#include "engine/engine.h"

#include <stdio.h>

#include <grpc/grpc.h>
#include <jpeglib.h>
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libswscale/swscale.h>
#include <protobuf-c/protobuf-c.h>
#include <spng.h>
#include <yaml.h>
#include <zlib.h>
#include <cJSON.h>
#include <microhttpd.h>

static void av_ver(char *b, size_t n, unsigned v)
{
    snprintf(b, n, "%u.%u.%u", v >> 16, (v >> 8) & 0xff, v & 0xff);
}

int lip_cli_version(int argc, char **argv)
{
    if (lip_cli_wants_help(argc, argv)) {
        printf("usage: lipsync version\n\nPrints the version of lipsync and of the libraries it "
               "links (ONNX Runtime, gRPC, protobuf-c, libjpeg-turbo, libspng, zlib, FFmpeg, "
               "libyaml, cJSON, libmicrohttpd) and the ONNX Runtime execution providers.\n");
        return 0;
    }
    char fmt[32], avf[32], sws[32], prov[512] = "";
    av_ver(fmt, sizeof fmt, avcodec_version());
    av_ver(avf, sizeof avf, avformat_version());
    av_ver(sws, sizeof sws, swscale_version());
    lip_engine_providers(prov, sizeof prov);
    printf("lipsync %s (%s)\n", LIP_VERSION, LIP_GIT_REV);
    printf("onnxruntime %s (providers: %s)\n", lip_engine_ort_version(), prov);
    printf("grpc %s\n", grpc_version_string());
    printf("protobuf-c %s\n", protobuf_c_version());
    printf("libjpeg-turbo (libjpeg API %d)\n", JPEG_LIB_VERSION);
    printf("libspng %d.%d.%d\n", SPNG_VERSION_MAJOR, SPNG_VERSION_MINOR, SPNG_VERSION_PATCH);
    printf("zlib %s\n", zlibVersion());
    printf("ffmpeg libavcodec %s, libavformat %s, libswscale %s\n", fmt, avf, sws);
    printf("libyaml %s\n", yaml_get_version_string());
    printf("cjson %s\n", cJSON_Version());
    printf("libmicrohttpd %s\n", MHD_get_version());
    return 0;
}
