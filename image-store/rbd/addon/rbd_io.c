/*
 * rbd_io: the I/O path of the RBD store backend, a thin Node-API layer over librbd's C API
 * (librbd/librbd.h). It only opens images and moves blocks: rbd_aio_read/write/flush/discard,
 * whose completions arrive on a librbd thread and are handed to JavaScript through one
 * thread-safe function per image. Management (create, clone, snapshot, protect, remove) stays
 * in TypeScript over the `rbd` CLI (image-store/rbd/rbd-cli.ts); see docs/decisions.md. The one
 * exception is the exclusive lock a crashed process of ours left behind (clientAddress, lockOwners,
 * breakLock): taken over at open, so a restart does not stall writes for the watch timeout.
 *
 * Node-API only (no node-addon-api), so the same source builds for every Node ABI (20, 24)
 * and cross-builds for aarch64 like better-sqlite3 (os-overlay/build/firmware.sh).
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <rados/librados.h>
#include <rbd/librbd.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <stdio.h>

#define CHECK(call)                                                    \
  do {                                                                 \
    if ((call) != napi_ok) {                                           \
      napi_throw_error(env, NULL, "rbd_io: N-API call failed: " #call); \
      return NULL;                                                     \
    }                                                                  \
  } while (0)

typedef struct {
  rados_t cluster;
  rados_ioctx_t ioctx;
  int open_images;
  int shut;
} cluster_t;

typedef struct {
  cluster_t *cl;
  napi_ref cl_ref; /* keeps the cluster object alive while the image is open */
  rbd_image_t image;
  napi_threadsafe_function tsfn;
  int inflight;
  int closed;
} image_t;

enum { OP_READ, OP_WRITE, OP_FLUSH, OP_DISCARD, OP_CLOSE };

typedef struct {
  image_t *img;
  int op;
  napi_ref cb;
  napi_ref buf; /* the Buffer read into or written from (the image object for close), held until completion */
  rbd_completion_t comp;
} req_t;

static napi_value throw_errno(napi_env env, const char *what, int r) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(-r));
  napi_value m, code, err;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
  napi_create_error(env, NULL, m, &err);
  napi_create_int32(env, -r, &code);
  napi_set_named_property(env, err, "errno", code);
  napi_throw(env, err);
  return NULL;
}

static int get_string(napi_env env, napi_value v, char *out, size_t cap) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return -1;
  if (t == napi_undefined || t == napi_null) { out[0] = 0; return 0; }
  size_t n;
  if (napi_get_value_string_utf8(env, v, out, cap, &n) != napi_ok) return -1;
  return n + 1 >= cap ? -1 : 0;
}

/* connect(conf, id, keyring, pool): one RADOS connection and an I/O context on the pool. */
static void cluster_finalize(napi_env env, void *data, void *hint) {
  (void)env; (void)hint;
  cluster_t *cl = data;
  if (!cl->shut) {
    rados_ioctx_destroy(cl->ioctx);
    rados_shutdown(cl->cluster);
  }
  free(cl);
}

static napi_value js_connect(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char conf[1024], id[256], keyring[1024], pool[256];
  if (argc < 4 || get_string(env, argv[0], conf, sizeof conf) || get_string(env, argv[1], id, sizeof id) ||
      get_string(env, argv[2], keyring, sizeof keyring) || get_string(env, argv[3], pool, sizeof pool)) {
    napi_throw_type_error(env, NULL, "connect(conf, id, keyring, pool): strings expected");
    return NULL;
  }
  cluster_t *cl = calloc(1, sizeof *cl);
  int r = rados_create(&cl->cluster, id[0] ? id : NULL);
  if (r < 0) { free(cl); return throw_errno(env, "rados_create", r); }
  if (conf[0]) r = rados_conf_read_file(cl->cluster, conf);
  if (r >= 0 && keyring[0]) r = rados_conf_set(cl->cluster, "keyring", keyring);
  /* UNMAP must leave zeros (the target reports LBPRZ=1): by default librbd 16 skips the parts of
     a discard that do not cover whole objects, and those would keep their old data. */
  if (r >= 0) r = rados_conf_set(cl->cluster, "rbd_skip_partial_discard", "false");
  if (r >= 0) r = rados_connect(cl->cluster);
  if (r < 0) { rados_shutdown(cl->cluster); free(cl); return throw_errno(env, "rados_connect", r); }
  r = rados_ioctx_create(cl->cluster, pool, &cl->ioctx);
  if (r < 0) { rados_shutdown(cl->cluster); free(cl); return throw_errno(env, "rados_ioctx_create", r); }
  napi_value obj;
  CHECK(napi_create_object(env, &obj));
  CHECK(napi_wrap(env, obj, cl, cluster_finalize, NULL, NULL));
  return obj;
}

static cluster_t *unwrap_cluster(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_unwrap(env, v, &p) != napi_ok || !p) { napi_throw_type_error(env, NULL, "not a cluster"); return NULL; }
  return p;
}

/* shutdown(cluster): refused while images are open. */
static napi_value js_shutdown(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  cluster_t *cl = unwrap_cluster(env, argv[0]);
  if (!cl) return NULL;
  if (cl->open_images > 0) { napi_throw_error(env, NULL, "shutdown: images are still open"); return NULL; }
  if (!cl->shut) {
    cl->shut = 1;
    rados_ioctx_destroy(cl->ioctx);
    rados_shutdown(cl->cluster);
  }
  return NULL;
}

/* Runs on the JS thread for every completion librbd reported. */
static void call_js(napi_env env, napi_value js_cb, void *context, void *data) {
  (void)js_cb; (void)context;
  req_t *q = data;
  image_t *img = q->img;
  ssize_t r = rbd_aio_get_return_value(q->comp);
  rbd_aio_release(q->comp);
  if (env) {
    napi_value cb, argv[1], global;
    napi_get_reference_value(env, q->cb, &cb);
    if (r < 0) {
      char msg[128];
      snprintf(msg, sizeof msg, "librbd %s: %s", q->op == OP_READ ? "read" : q->op == OP_WRITE ? "write" : q->op == OP_FLUSH ? "flush" : q->op == OP_CLOSE ? "close" : "discard", strerror((int)-r));
      napi_value m, code;
      napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
      napi_create_error(env, NULL, m, &argv[0]);
      napi_create_int32(env, (int)-r, &code);
      napi_set_named_property(env, argv[0], "errno", code);
    } else {
      napi_get_null(env, &argv[0]);
    }
    napi_get_global(env, &global);
    napi_delete_reference(env, q->cb);
    if (q->buf) napi_delete_reference(env, q->buf);
    if (--img->inflight == 0) napi_unref_threadsafe_function(env, img->tsfn);
    if (q->op == OP_CLOSE) {
      /* The image is gone: its completion queue and its hold on the cluster object go too. */
      img->cl->open_images--;
      napi_release_threadsafe_function(img->tsfn, napi_tsfn_release);
      napi_delete_reference(env, img->cl_ref);
    }
    napi_call_function(env, global, cb, 1, argv, NULL);
  }
  free(q);
}

/* Runs on a librbd thread. */
static void on_complete(rbd_completion_t c, void *arg) {
  (void)c;
  req_t *q = arg;
  napi_call_threadsafe_function(q->img->tsfn, q, napi_tsfn_blocking);
}

static void image_finalize(napi_env env, void *data, void *hint) {
  (void)env; (void)hint;
  image_t *img = data;
  /* Closed explicitly in normal use; a leaked handle is closed here (no I/O can be in flight:
     every request holds a reference to its callback, not to the image object, so check). */
  if (!img->closed && img->inflight == 0) {
    rbd_close(img->image);
    img->cl->open_images--;
  }
  free(img);
}

/* openImage(cluster, name, snapshot|null, readOnly) -> image */
static napi_value js_open_image(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  cluster_t *cl = unwrap_cluster(env, argv[0]);
  if (!cl) return NULL;
  if (cl->shut) { napi_throw_error(env, NULL, "openImage: cluster is shut down"); return NULL; }
  char name[512], snap[512];
  bool ro = false;
  if (argc < 4 || get_string(env, argv[1], name, sizeof name) || get_string(env, argv[2], snap, sizeof snap) ||
      napi_get_value_bool(env, argv[3], &ro) != napi_ok) {
    napi_throw_type_error(env, NULL, "openImage(cluster, name, snapshot, readOnly)");
    return NULL;
  }
  image_t *img = calloc(1, sizeof *img);
  img->cl = cl;
  int r = ro || snap[0] ? rbd_open_read_only(cl->ioctx, name, &img->image, snap[0] ? snap : NULL)
                        : rbd_open(cl->ioctx, name, &img->image, NULL);
  if (r < 0) { free(img); return throw_errno(env, "rbd_open", r); }
  napi_value obj, resname;
  CHECK(napi_create_object(env, &obj));
  CHECK(napi_create_string_utf8(env, "rbd_io", NAPI_AUTO_LENGTH, &resname));
  if (napi_create_threadsafe_function(env, NULL, NULL, resname, 0, 1, NULL, NULL, NULL, call_js, &img->tsfn) != napi_ok) {
    rbd_close(img->image);
    free(img);
    napi_throw_error(env, NULL, "openImage: cannot create the completion queue");
    return NULL;
  }
  napi_unref_threadsafe_function(env, img->tsfn);
  cl->open_images++;
  CHECK(napi_wrap(env, obj, img, image_finalize, NULL, NULL));
  CHECK(napi_create_reference(env, argv[0], 1, &img->cl_ref));
  return obj;
}

static image_t *unwrap_image(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_unwrap(env, v, &p) != napi_ok || !p) { napi_throw_type_error(env, NULL, "not an image"); return NULL; }
  image_t *img = p;
  if (img->closed) { napi_throw_error(env, NULL, "image is closed"); return NULL; }
  return img;
}

/* size(image) -> bytes */
static napi_value js_size(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  image_t *img = unwrap_image(env, argv[0]);
  if (!img) return NULL;
  uint64_t size;
  int r = rbd_get_size(img->image, &size);
  if (r < 0) return throw_errno(env, "rbd_get_size", r);
  CHECK(napi_create_double(env, (double)size, &out));
  return out;
}

static req_t *new_req(napi_env env, image_t *img, int op, napi_value cb) {
  req_t *q = calloc(1, sizeof *q);
  q->img = img;
  q->op = op;
  napi_create_reference(env, cb, 1, &q->cb);
  if (rbd_aio_create_completion(q, on_complete, &q->comp) < 0) {
    napi_delete_reference(env, q->cb);
    free(q);
    return NULL;
  }
  if (img->inflight++ == 0) napi_ref_threadsafe_function(env, img->tsfn);
  return q;
}

static void fail_req(napi_env env, req_t *q) {
  rbd_aio_release(q->comp);
  napi_delete_reference(env, q->cb);
  if (q->buf) napi_delete_reference(env, q->buf);
  if (--q->img->inflight == 0) napi_unref_threadsafe_function(env, q->img->tsfn);
  free(q);
}

/* read(image, offset, buffer, cb(err)): fills buffer from offset. */
/* write(image, offset, buffer, fua, cb(err)) */
static napi_value js_rw(napi_env env, napi_callback_info info, int op) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  image_t *img = unwrap_image(env, argv[0]);
  if (!img) return NULL;
  double off;
  void *data;
  size_t len;
  bool fua = false;
  napi_value cb = argv[op == OP_WRITE ? 4 : 3];
  if (napi_get_value_double(env, argv[1], &off) != napi_ok || napi_get_buffer_info(env, argv[2], &data, &len) != napi_ok ||
      (op == OP_WRITE && napi_get_value_bool(env, argv[3], &fua) != napi_ok)) {
    napi_throw_type_error(env, NULL, "read(image, offset, buffer, cb) / write(image, offset, buffer, fua, cb)");
    return NULL;
  }
  req_t *q = new_req(env, img, op, cb);
  if (!q) return throw_errno(env, "rbd_aio_create_completion", -12);
  napi_create_reference(env, argv[2], 1, &q->buf);
  int r = op == OP_READ ? rbd_aio_read2(img->image, (uint64_t)off, len, data, q->comp, 0)
                        : rbd_aio_write2(img->image, (uint64_t)off, len, data, q->comp, fua ? LIBRADOS_OP_FLAG_FADVISE_FUA : 0);
  if (r < 0) { fail_req(env, q); return throw_errno(env, op == OP_READ ? "rbd_aio_read" : "rbd_aio_write", r); }
  return NULL;
}
static napi_value js_read(napi_env env, napi_callback_info info) { return js_rw(env, info, OP_READ); }
static napi_value js_write(napi_env env, napi_callback_info info) { return js_rw(env, info, OP_WRITE); }

/* flush(image, cb) */
static napi_value js_flush(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  image_t *img = unwrap_image(env, argv[0]);
  if (!img) return NULL;
  req_t *q = new_req(env, img, OP_FLUSH, argv[1]);
  if (!q) return throw_errno(env, "rbd_aio_create_completion", -12);
  int r = rbd_aio_flush(img->image, q->comp);
  if (r < 0) { fail_req(env, q); return throw_errno(env, "rbd_aio_flush", r); }
  return NULL;
}

/* discard(image, offset, length, cb) */
static napi_value js_discard(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  image_t *img = unwrap_image(env, argv[0]);
  if (!img) return NULL;
  double off, len;
  if (napi_get_value_double(env, argv[1], &off) != napi_ok || napi_get_value_double(env, argv[2], &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "discard(image, offset, length, cb)");
    return NULL;
  }
  req_t *q = new_req(env, img, OP_DISCARD, argv[3]);
  if (!q) return throw_errno(env, "rbd_aio_create_completion", -12);
  int r = rbd_aio_discard(img->image, (uint64_t)off, (uint64_t)len, q->comp);
  if (r < 0) { fail_req(env, q); return throw_errno(env, "rbd_aio_discard", r); }
  return NULL;
}

/* close(image, cb): the caller has waited for its requests (and flushed); refused otherwise.
   Asynchronous (rbd_aio_close): closing releases the exclusive lock and notifies the image's
   watchers, which waits for their answers (up to client_notify_timeout, 10 s, when one of them
   died); the event loop, and every other client's I/O, must not wait with it. */
static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  image_t *img = unwrap_image(env, argv[0]);
  if (!img) return NULL;
  if (img->inflight > 0) { napi_throw_error(env, NULL, "close: requests still in flight"); return NULL; }
  req_t *q = new_req(env, img, OP_CLOSE, argv[1]);
  if (!q) return throw_errno(env, "rbd_aio_create_completion", -12);
  napi_create_reference(env, argv[0], 1, &q->buf); /* keeps img alive until the completion ran */
  img->closed = 1;
  int r = rbd_aio_close(img->image, q->comp);
  if (r < 0) {
    /* Not started: close it the synchronous way rather than leak it. */
    fail_req(env, q);
    r = rbd_close(img->image);
    img->cl->open_images--;
    napi_release_threadsafe_function(img->tsfn, napi_tsfn_release);
    napi_delete_reference(env, img->cl_ref);
    if (r < 0) return throw_errno(env, "rbd_close", r);
    napi_value cb = argv[1], global, nul;
    napi_get_global(env, &global);
    napi_get_null(env, &nul);
    napi_call_function(env, global, cb, 1, &nul, NULL);
  }
  return NULL;
}

/* clientAddress(cluster) -> this connection's address(es), as librbd names an exclusive lock's owner. */
static napi_value js_client_address(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  cluster_t *cl = unwrap_cluster(env, argv[0]);
  if (!cl) return NULL;
  if (cl->shut) { napi_throw_error(env, NULL, "clientAddress: cluster is shut down"); return NULL; }
  char *addrs = NULL;
  int r = rados_getaddrs(cl->cluster, &addrs);
  if (r < 0) return throw_errno(env, "rados_getaddrs", r);
  napi_status st = napi_create_string_utf8(env, addrs, NAPI_AUTO_LENGTH, &out);
  free(addrs);
  CHECK(st);
  return out;
}

/* lockOwners(image) -> string[]: who holds the image's exclusive lock (empty when nobody). */
static napi_value js_lock_owners(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  image_t *img = unwrap_image(env, argv[0]);
  if (!img) return NULL;
  rbd_lock_mode_t mode;
  char *owners[8];
  size_t n = 8;
  int r = rbd_lock_get_owners(img->image, &mode, owners, &n);
  CHECK(napi_create_array(env, &out));
  if (r == -ENOENT) return out; /* nobody holds it */
  if (r < 0) return throw_errno(env, "rbd_lock_get_owners", r);
  for (size_t i = 0; i < n; i++) {
    napi_value v;
    napi_create_string_utf8(env, owners[i], NAPI_AUTO_LENGTH, &v);
    napi_set_element(env, out, (uint32_t)i, v);
  }
  rbd_lock_get_owners_cleanup(owners, n);
  return out;
}

/* breakLock(image, owner): takes a dead owner's exclusive lock away (librbd blocklists it first). */
static napi_value js_break_lock(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  image_t *img = unwrap_image(env, argv[0]);
  if (!img) return NULL;
  char owner[256];
  if (argc < 2 || get_string(env, argv[1], owner, sizeof owner)) { napi_throw_type_error(env, NULL, "breakLock(image, owner)"); return NULL; }
  int r = rbd_lock_break(img->image, RBD_LOCK_MODE_EXCLUSIVE, owner);
  if (r < 0 && r != -ENOENT) return throw_errno(env, "rbd_lock_break", r);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "connect", NULL, js_connect, NULL, NULL, NULL, napi_default, NULL },
    { "shutdown", NULL, js_shutdown, NULL, NULL, NULL, napi_default, NULL },
    { "openImage", NULL, js_open_image, NULL, NULL, NULL, napi_default, NULL },
    { "size", NULL, js_size, NULL, NULL, NULL, napi_default, NULL },
    { "read", NULL, js_read, NULL, NULL, NULL, napi_default, NULL },
    { "write", NULL, js_write, NULL, NULL, NULL, napi_default, NULL },
    { "flush", NULL, js_flush, NULL, NULL, NULL, napi_default, NULL },
    { "discard", NULL, js_discard, NULL, NULL, NULL, napi_default, NULL },
    { "close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL },
    { "clientAddress", NULL, js_client_address, NULL, NULL, NULL, napi_default, NULL },
    { "lockOwners", NULL, js_lock_owners, NULL, NULL, NULL, napi_default, NULL },
    { "breakLock", NULL, js_break_lock, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
