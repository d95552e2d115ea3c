#ifndef C_SWITCHBOARD_HIREDIS_SHIM_H
#define C_SWITCHBOARD_HIREDIS_SHIM_H

#include <hiredis/hiredis.h>
#include <hiredis/read.h>

// `redisReaderGetError` is a macro in hiredis 0.14; Swift needs a function.
static inline const char *switchboard_redisReaderGetError(redisReader *reader) {
    return reader->errstr;
}

#endif
