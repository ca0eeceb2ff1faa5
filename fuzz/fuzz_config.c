/* SPDX-License-Identifier: MIT */
/* fuzz_config: lip_config_load_string (libyaml plus the key table: types, ranges, duplicates,
 * the Go layout) on arbitrary text, then the cross-key validation and a dump of the result.
 * A config file is trusted less than it looks: it may be templated from user input. */
#include "config/config.h"
#include "fuzz.h"

FUZZ_QUIET_INIT

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lip_config *cfg = lip_config_new(NULL);
    if (!cfg) abort();
    lip_err e = {0};
    int rc = lip_config_load_string(cfg, (const char *)data, size, "fuzz.yaml", &e);
    fuzz_check_err(rc, &e, "lip_config_load_string");
    if (rc == 0) {
        lip_err_clear(&e);
        rc = lip_config_validate(cfg, &e);
        fuzz_check_err(rc, &e, "lip_config_validate");
    }
    lip_config_free(cfg);
    return 0;
}
