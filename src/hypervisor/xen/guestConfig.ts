// Turns a parsed xl config file into the guest description ferry needs
// (name, sizing, NICs, disks). Errors name the file and line.
import { basename } from 'node:path';
import { InputError } from '../../errors';
import type { GuestDisk, GuestInfo } from '../driver';
import { DiskSpecError, parseDiskSpec } from './diskSpec';
import { parseVifSpec } from './vifSpec';
import { hostPath } from './xlList';
import { configNumber, configString, configStringList, type XlConfig } from './xlConfig';

/** The guest as its config file defines it; state and id come from the running system. */
export type ConfiguredGuest = Omit<GuestInfo, 'state' | 'id'>;

export function guestFromConfig(config: XlConfig): ConfiguredGuest {
  const name = configString(config, 'name');
  if (!name) throw new InputError(`${config.fileName}: no name = "..." setting: xl needs a domain name`);

  const disks: GuestDisk[] = configStringList(config, 'disk').flatMap(({ value, line }) => {
    let spec;
    try {
      spec = parseDiskSpec(value);
    } catch (err) {
      if (err instanceof DiskSpecError) {
        throw new InputError(`${config.fileName}:${line}: bad disk spec: ${err.message}`, { cause: err });
      }
      throw err;
    }
    if (spec.target === '') return []; // an empty CD drive holds no data
    return [{
      device: spec.vdev,
      path: hostPath(spec.target, spec.script !== undefined),
      format: spec.format,
      readOnly: !spec.readWrite,
      ...(spec.cdrom ? { cdrom: true } : {}),
    }];
  });

  const nics = configStringList(config, 'vif').map(({ value, line }) => {
    try {
      const vif = parseVifSpec(value);
      const model = vif.options.model;
      return { ...(vif.mac ? { mac: vif.mac } : {}), ...(vif.bridge ? { bridge: vif.bridge } : {}), ...(model ? { model } : {}) };
    } catch (err) {
      throw new InputError(`${config.fileName}:${line}: bad vif spec: ${(err as Error).message}`, { cause: err });
    }
  });

  const memory = configNumber(config, 'memory');
  const maxmem = configNumber(config, 'maxmem');
  const vcpus = configNumber(config, 'maxvcpus') ?? configNumber(config, 'vcpus');
  return {
    name,
    ...(vcpus !== undefined ? { vcpus } : {}),
    ...(memory !== undefined ? { memoryMiB: memory } : {}),
    ...(maxmem !== undefined || memory !== undefined ? { maxMemoryMiB: Math.max(maxmem ?? 0, memory ?? 0) } : {}),
    nics,
    disks,
    config: { fileName: basename(config.fileName), text: config.text },
  };
}
