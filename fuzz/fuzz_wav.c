/* SPDX-License-Identifier: MIT */
/* fuzz_wav: lip_audio_wav_parse (RIFF/WAVE parser plus libswresample resampling to 16 kHz)
 * on arbitrary bytes; WAV files come from clients (render/CLI) and are hostile. */
#include "audio/audio.h"
#include "fuzz.h"

FUZZ_QUIET_INIT

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    float *pcm = NULL;
    size_t n = 0;
    lip_err e = {0};
    int rc = lip_audio_wav_parse(data, size, &pcm, &n, &e);
    fuzz_check_err(rc, &e, "lip_audio_wav_parse");
    if (rc == 0) {
        /* Touch every sample so a short buffer shows up under ASan. */
        volatile float acc = 0;
        for (size_t i = 0; i < n; i++) acc += pcm[i];
        (void)acc;
    } else if (pcm) {
        abort(); /* a failed parse must not hand back a buffer */
    }
    lip_free(pcm);
    return 0;
}
