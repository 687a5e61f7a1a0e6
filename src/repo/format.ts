// Format facts the repository stores in its config and every writer must share
// to dedupe against existing data (docs/FORMAT.md): how images are cut into
// regions and chunks. Owned by repo/ so that repo/ depends on nothing upstream;
// dedupe/ reads them from here.

export interface ChunkerParams {
  kind: 'fastcdc' | 'fixed';
  /** Target average chunk size (fastcdc) or the block size (fixed). */
  avgSize: number;
  minSize: number;
  maxSize: number;
}

/** Regions are the unit of parallel work and of region maps; chunks never cross them. */
export const REGION_SIZE = 32 * 1024 * 1024;
