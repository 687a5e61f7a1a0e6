;; The FastCDC gear loop of src/dedupe/chunker.ts in WebAssembly: ~4x faster
;; than the same loop in JavaScript (V8), and it was ~30% of a nightly run's CPU.
;; Built into gearCut.wasm and gearCutWasm.ts by scripts/build-wasm.sh (wat2wasm,
;; Debian package `wabt`); both are committed, so neither CI nor an install
;; needs the tool.
;;
;; Memory (imported, sized by the caller): bytes [0, 1024) hold the gear table,
;; 256 little-endian i32; the bytes to cut lie anywhere above.
(module
  (import "ferry" "memory" (memory 1))
  ;; Cut from address $i: the rolling hash starts at 0 there (a chunk's start plus
  ;; its minimum size); while $i < $normalEnd a cut needs (h & $maskS) == 0, then
  ;; until $limitEnd (h & $maskL) == 0. Returns the address just past the byte
  ;; where the chunk ends, or $limitEnd without a cut.
  (func (export "cut") (param $i i32) (param $normalEnd i32) (param $limitEnd i32) (param $maskS i32) (param $maskL i32) (result i32)
    (local $h i32)
    (block $strictDone
      (loop $strict
        (br_if $strictDone (i32.ge_u (local.get $i) (local.get $normalEnd)))
        (local.set $h (i32.add (i32.shl (local.get $h) (i32.const 1))
                               (i32.load (i32.shl (i32.load8_u (local.get $i)) (i32.const 2)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $strict (i32.and (local.get $h) (local.get $maskS)))
        (return (local.get $i))))
    (block $looseDone
      (loop $loose
        (br_if $looseDone (i32.ge_u (local.get $i) (local.get $limitEnd)))
        (local.set $h (i32.add (i32.shl (local.get $h) (i32.const 1))
                               (i32.load (i32.shl (i32.load8_u (local.get $i)) (i32.const 2)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $loose (i32.and (local.get $h) (local.get $maskL)))
        (return (local.get $i))))
    (local.get $limitEnd)))
