// What ferry's qemu-live copies are called inside QEMU and in the work
// directory, and how a killed run's leftovers are found and removed there by
// those names: copy jobs, fleecing filters, frozen bitmaps and target nodes.
// Tracking bitmaps (`ferry-cbt-*`) are no leftovers: they are the state the
// next incremental needs.
import { HypervisorError } from '../errors';
import { deviceProxyPath, namedBitmaps, queryDisks, queryNodes } from '../hypervisor/qemu/qmpBlock';
import type { QmpClient } from '../hypervisor/qemu/qmpClient';
import { pollUntil } from './providerParts';

export const QEMU_OWNED_PREFIX = 'ferry-';
export const TRACKING_BITMAP_PREFIX = 'ferry-cbt-';
export const FROZEN_BITMAP_PREFIX = 'ferry-tmp-';
// Block node names are limited to 31 characters: target nodes are named by a hash.
const TARGET_NODE = /^ferry-[0-9a-f]{12}$/;
// The fleecing nodes of a disk: copy-before-write filter, snapshot access, temporary image.
const FLEECE_NODE = /^ferry-([cat])-[0-9a-f]{12}$/;
export const JOB_PREFIX = 'ferry-job-';
export const TARGET_FILE = /^ferry-.+\.(raw|qcow2)$/;

/**
 * Cancels ferry's copy jobs, takes ferry's fleecing out of the guest's path,
 * and deletes ferry's frozen bitmaps and unused target nodes in one QEMU.
 * Each is added to `removed` as it goes, so a failure part way loses none.
 */
export async function removeQmpLeftovers(c: QmpClient, socket: string, removed: string[]): Promise<void> {
  const jobs = await c.execute<{ device: string }[]>('query-block-jobs');
  for (const job of jobs.filter((j) => j.device.startsWith(JOB_PREFIX))) {
    await c.execute('block-job-cancel', { device: job.device, force: true });
    const ended = await pollUntil(async () => !(await c.execute<{ device: string }[]>('query-block-jobs')).some((j) => j.device === job.device),
      { timeoutMs: 30_000, intervalMs: 100 });
    if (!ended) throw new HypervisorError(`ferry's leftover job ${job.device} on ${socket} did not end after block-job-cancel`);
    removed.push(`${socket}:job:${job.device}`);
  }
  removed.push(...(await removeLeftoverFleecing(c, socket)));
  const inUse = new Set((await queryDisks(c)).map((d) => d.nodeName));
  for (const node of await queryNodes(c)) {
    for (const b of namedBitmaps(node)) {
      if (!b.name.startsWith(FROZEN_BITMAP_PREFIX)) continue;
      await c.execute('block-dirty-bitmap-remove', { node: node['node-name'], name: b.name });
      removed.push(`${socket}:bitmap:${node['node-name']}/${b.name}`);
    }
    if (TARGET_NODE.test(node['node-name']) && !inUse.has(node['node-name'])) {
      await c.execute('blockdev-del', { 'node-name': node['node-name'] });
      removed.push(`${socket}:node:${node['node-name']}`);
    }
  }
}

interface BlockGraph {
  nodes: { id: number; name: string; type: string }[];
  edges: { parent: number; child: number; name: string }[];
}

/**
 * A killed run's fleecing: devices still reading through a ferry filter get
 * their disk back, then the filter, snapshot-access and temporary nodes go.
 */
async function removeLeftoverFleecing(c: QmpClient, socket: string): Promise<string[]> {
  const removed: string[] = [];
  const deleteNodes = async (kind: string) => {
    for (const node of await queryNodes(c)) {
      const name = node['node-name'];
      if (FLEECE_NODE.exec(name)?.[1] !== kind) continue;
      for (const b of namedBitmaps(node)) await c.execute('block-dirty-bitmap-remove', { node: name, name: b.name });
      await c.execute('blockdev-del', { 'node-name': name });
      removed.push(`${socket}:node:${name}`);
    }
  };
  // Access nodes hold the filters; the filter must be out of the guest's path before it can go; the temporary image last.
  await deleteNodes('a');
  const graph = await c.execute<BlockGraph>('x-debug-query-block-graph');
  const byId = new Map(graph.nodes.map((n) => [n.id, n]));
  const fileOf = (name: string): string | undefined => {
    const node = graph.nodes.find((n) => n.name === name && n.type === 'block-driver');
    const edge = node && graph.edges.find((e) => e.parent === node.id && e.name === 'file');
    return edge ? byId.get(edge.child)?.name : undefined;
  };
  for (const disk of await queryDisks(c)) {
    if (FLEECE_NODE.exec(disk.nodeName)?.[1] !== 'c') continue;
    const original = fileOf(disk.nodeName);
    const path = disk.qdev === undefined ? undefined : deviceProxyPath(disk.qdev);
    if (!original || !path) throw new HypervisorError(`guest device ${disk.qdev ?? '?'} on ${socket} reads through ferry's filter ${disk.nodeName}, but its disk node cannot be found`);
    await c.execute('qom-set', { path, property: 'drive', value: original });
    removed.push(`${socket}:filter:${disk.nodeName}`);
  }
  await deleteNodes('c');
  await deleteNodes('t');
  return removed;
}
