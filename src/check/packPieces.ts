// How `check --read-data` reads a pack: in pieces of about one read range
// (4 MiB by default) instead of whole, so that the packs in flight hold a few
// MiB each rather than 16 (issue 11: check's peak was 165 MiB on a dense
// repository). Pieces cover the pack from its first byte to its last, in order
// (the pack's name hashes all of them), and a piece boundary never cuts a blob,
// so each piece's blobs are verified on their own.

/** A blob of the pack, by where it lies (index entries and the header's, possibly overlapping). */
export interface BlobSpan {
  offset: number;
  storedLength: number;
}

export interface PackPiece {
  start: number;
  end: number;
  /** Indexes (into the spans given) of the blobs that lie inside [start, end). */
  blobs: number[];
}

/**
 * Pieces of a pack of `size` bytes holding `blobs` (each inside the pack), of at most `pieceBytes` where the blobs allow:
 * a blob larger than that, or blobs overlapping across the limit, make a larger piece.
 */
export function packPieces(size: number, blobs: readonly BlobSpan[], pieceBytes: number): PackPiece[] {
  // Where a cut may go: no blob spans it.
  const order = [...blobs.keys()].sort((a, b) => blobs[a].offset - blobs[b].offset);
  const cuts: number[] = [];
  let coveredTo = 0;
  for (const i of order) {
    const { offset, storedLength } = blobs[i];
    if (offset >= coveredTo) cuts.push(offset);
    coveredTo = Math.max(coveredTo, offset + storedLength);
  }
  if (coveredTo < size) cuts.push(coveredTo);
  cuts.push(size);

  const pieces: PackPiece[] = [];
  let start = 0;
  let next = 0; // first cut after `start`
  while (start < size) {
    while (cuts[next] <= start) next++;
    let end = cuts[next];
    for (let k = next + 1; k < cuts.length && cuts[k] - start <= pieceBytes; k++) end = cuts[k];
    // A stretch with no blob in it (a large header, a damaged pack) is cut anywhere.
    if (end - start > pieceBytes && !order.some((i) => blobs[i].offset < end && blobs[i].offset + blobs[i].storedLength > start)) end = start + pieceBytes;
    pieces.push({ start, end, blobs: [] });
    start = end;
  }
  let p = 0;
  for (const i of order) {
    while (blobs[i].offset >= pieces[p].end) p++;
    pieces[p].blobs.push(i);
  }
  return pieces;
}
