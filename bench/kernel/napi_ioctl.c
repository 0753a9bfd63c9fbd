/*
 * The N-API alternative to koffi, for the measurement that chose between them: one function,
 * ioctl(fd, request, buffer) -> result or -errno. Built with the machine's gcc at bench time
 * against Node's own headers; never shipped.
 */
#include <errno.h>
#include <node_api.h>
#include <sys/ioctl.h>

static napi_value call_ioctl(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd = 0, request = 0;
  napi_get_value_int32(env, argv[0], &fd);
  napi_get_value_int32(env, argv[1], &request);
  void *data = NULL;
  size_t length = 0;
  napi_get_buffer_info(env, argv[2], &data, &length);
  int r = ioctl(fd, (unsigned long)request, data);
  napi_value out;
  napi_create_int32(env, r < 0 ? -errno : r, &out);
  return out;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "ioctl", NAPI_AUTO_LENGTH, call_ioctl, NULL, &fn);
  napi_set_named_property(env, exports, "ioctl", fn);
  return exports;
}
