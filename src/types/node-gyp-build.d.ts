// node-gyp-build ships no types: it loads the native addon of the package in
// `dir` from build/Release, else from a matching prebuilds/<platform>-<arch>/.
declare module 'node-gyp-build' {
  function load(dir: string): unknown;
  export = load;
}
