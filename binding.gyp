{
  "targets": [
    {
      "target_name": "ferry_seek",
      "sources": ["native/seek.c", "native/memory.c"]
    }
  ]
}
