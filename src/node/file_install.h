/* SPDX-License-Identifier: Apache-2.0 */
/* Installing a host file that containers map (the runtime library, the
 * remote client's libraries): copied beside its place, flushed, then
 * renamed over it, so a container starting meanwhile maps the old file or
 * the new one, never a half-written one, and a crash never leaves the name
 * on an empty file. */
#ifndef FX_NODE_FILE_INSTALL_H
#define FX_NODE_FILE_INSTALL_H

#include "flexpu/error.h"

/* Installs `from` as `to` (mode 0755). `option` names where `from` came
 * from (a flag, as the operator wrote it) in the error when it cannot be
 * read; 0, or -1 with err naming the path. */
int fx_file_install(const char *from, const char *to, const char *option,
                    struct flexpu_error *err);

#endif
