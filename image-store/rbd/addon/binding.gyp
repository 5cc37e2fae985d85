{
  "targets": [
    {
      "target_name": "rbd_io",
      "sources": ["rbd_io.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "libraries": ["-lrbd", "-lrados"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
