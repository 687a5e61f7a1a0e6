// mallopt(M_MMAP_THRESHOLD): glibc raises its mmap threshold each time an
// mmap'd block is freed (up to 32 MiB), after which ferry's MiB-sized buffers
// come from the arenas and, once freed, stay in the process's RSS as
// fragments. A fixed threshold keeps every buffer at or above it in its own
// mapping, returned to the system on free (docs/ARCHITECTURE.md, "Memory").
#include <node_api.h>
#include <stdbool.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

// mallocMmapThreshold(bytes): true when the C library took it (glibc), false
// where there is no such setting (another libc).
static napi_value malloc_mmap_threshold(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int64_t bytes = 0;
  if (argc < 1 || napi_get_value_int64(env, argv[0], &bytes) != napi_ok || bytes <= 0 || bytes > (int64_t)1 << 30) {
    napi_throw_range_error(env, NULL, "mallocMmapThreshold(bytes) expects 1 byte to 1 GiB");
    return NULL;
  }
  bool taken = false;
#ifdef __GLIBC__
  taken = mallopt(M_MMAP_THRESHOLD, (int)bytes) == 1;
#endif
  napi_value out;
  napi_get_boolean(env, taken, &out);
  return out;
}

void ferry_memory_exports(napi_env env, napi_value exports) {
  napi_value f;
  napi_create_function(env, "mallocMmapThreshold", NAPI_AUTO_LENGTH, malloc_mmap_threshold, NULL, &f);
  napi_set_named_property(env, exports, "mallocMmapThreshold", f);
}
