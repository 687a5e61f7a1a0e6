// Worker threads and child processes (pipeline workers, the watchdog, the
// QMP command) run compiled JavaScript. When the modules that start them are
// loaded from the TypeScript sources (under vitest), the entry points come
// from the build in dist/ (npm test builds first).
import * as path from 'node:path';

/** src/ or dist/: the folder that holds this module's folder (host/). */
const ROOT = path.resolve(__dirname, '..');

/** The compiled JS of an entry point, by its path under src/ without extension, e.g. `workers/pipelineWorker`. */
export function compiledScript(modulePath: string): string {
  if (__filename.endsWith('.js')) return path.join(ROOT, `${modulePath}.js`);
  return path.resolve(ROOT, '..', 'dist', `${modulePath}.js`);
}
