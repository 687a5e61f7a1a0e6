// lseek(fd, offset, SEEK_DATA | SEEK_HOLE): Node has no lseek, and these two
// whence values are how ferry finds the allocated extents of a sparse image
// without reading its holes.
#define _GNU_SOURCE
#include <node_api.h>
#include <unistd.h>
#include <errno.h>
#include <string.h>

static napi_value seek_impl(napi_env env, napi_callback_info info, int whence) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd = -1;
  int64_t off = 0;
  if (argc < 2 || napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_value_int64(env, argv[1], &off) != napi_ok) {
    napi_throw_type_error(env, NULL, "seek(fd, offset) expects two numbers");
    return NULL;
  }
  off_t r = lseek(fd, (off_t)off, whence);
  napi_value out;
  if (r < 0) {
    if (errno == ENXIO) {  // no data / hole at or after offset: caller treats as end
      napi_create_int64(env, -1, &out);
      return out;
    }
    if (errno == EINVAL) {  // file system without SEEK_DATA support
      napi_create_int64(env, -2, &out);
      return out;
    }
    napi_throw_error(env, NULL, strerror(errno));
    return NULL;
  }
  napi_create_int64(env, (int64_t)r, &out);
  return out;
}

static napi_value seek_data(napi_env env, napi_callback_info info) { return seek_impl(env, info, SEEK_DATA); }
static napi_value seek_hole(napi_env env, napi_callback_info info) { return seek_impl(env, info, SEEK_HOLE); }

void ferry_memory_exports(napi_env env, napi_value exports);  // memory.c

static napi_value init(napi_env env, napi_value exports) {
  napi_value f1, f2;
  napi_create_function(env, "seekData", NAPI_AUTO_LENGTH, seek_data, NULL, &f1);
  napi_create_function(env, "seekHole", NAPI_AUTO_LENGTH, seek_hole, NULL, &f2);
  napi_set_named_property(env, exports, "seekData", f1);
  napi_set_named_property(env, exports, "seekHole", f2);
  ferry_memory_exports(env, exports);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
