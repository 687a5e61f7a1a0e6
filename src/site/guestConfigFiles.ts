// The files a restored guest's config becomes on its new host, as data
// ({path, content, mode}) for the caller to write atomically there: the
// rewritten config (or one made from the spec), and the original config
// kept beside it under its own name plus `.ferry-orig`.
//
//   xen       <dir>/<name>.cfg                     xl cfg (rewritten, or made from the spec)
//   libvirt   <dir>/<name>.xml                     domain XML (rewritten, or made from the spec)
//   qemu      <dir>/<name>.sh                      launch script (daemonizes)
//             <dir>/ferry-guest-<name>.service     the same as a systemd unit (QEMU in the foreground)
//   all       <dir>/<original file name>.ferry-orig   the config as backed up, byte for byte
import { basename } from 'node:path';
import { InputError } from '../errors';
import type { AttachedConfig, GuestSpec } from '../repo/restorePoint';
import { generateDomainXml, rewriteDomainXml } from './domainXmlRewrite';
import type { GuestRewriteOptions } from './guestRewrite';
import type { HostHypervisor } from './hostsFile';
import { qemuLaunch } from './qemuLaunch';
import { generateXlConfig, rewriteXlConfig } from './xlConfigRewrite';

export interface ConfigFile {
  path: string;
  content: Buffer;
  mode: number;
}

export interface GuestConfigFiles {
  files: ConfigFile[];
  /** One line each, for the restore's report (see RewrittenConfig.notes). */
  notes: string[];
}

export interface GuestConfigRequest extends GuestRewriteOptions {
  /** The guest's name in the repository. */
  guest: string;
  hypervisor: HostHypervisor;
  spec: GuestSpec;
  /** The restore point's config, if it has one. */
  original?: AttachedConfig;
  /** Where the files go on the host: /etc/xen, a folder for domain XML, a folder for launchers. */
  dir: string;
  /** A copy beside the original drops the uuid so the hypervisor makes a new one (xen, libvirt); default keep. */
  uuid?: 'keep' | 'drop';
  /** qemu: where the QMP socket, serial log and pid file go, and whether KVM works there. */
  qemu?: { runDir: string; accel: 'kvm' | 'tcg'; qemuBinary?: string };
  /** libvirt, made from the spec: `kvm` or `qemu` (TCG); default kvm. */
  domainType?: 'kvm' | 'qemu';
  /** libvirt: a file the serial console is logged to on the host (site restore's serial health check reads it). */
  serialLog?: string;
}

const SAFE_FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

export function guestConfigFiles(request: GuestConfigRequest): GuestConfigFiles {
  const name = request.name ?? request.guest;
  if (!SAFE_FILE_NAME.test(name)) throw new InputError(`guest name '${name}': cannot name a config file; use letters, digits, _ . -`);
  const dir = request.dir.replace(/\/+$/, '');
  if (!dir.startsWith('/')) throw new InputError(`config directory ${JSON.stringify(request.dir)} for guest ${name}: must be an absolute path`);
  const original = request.original ? { fileName: request.original.fileName, bytes: Buffer.from(request.original.content, 'base64') } : undefined;
  const text = original?.bytes.toString('utf8');
  const kind = text === undefined ? undefined : text.trimStart().startsWith('<') ? 'libvirt' : request.spec.hypervisor === 'xen' || /^\s*name\s*=/m.test(text) ? 'xen' : 'other';
  const files: ConfigFile[] = [];
  const notes: string[] = [];
  const made = (what: string) => notes.push(`${request.guest}: ${original ? `its config ${original.fileName} is not ${what}` : 'no config was backed up'}: ${what} was made from the guest spec`);

  if (request.hypervisor === 'xen') {
    const out = kind === 'xen'
      ? rewriteXlConfig(text!, original!.fileName, request.spec, request)
      : (made('an xl cfg'), generateXlConfig(name, request.spec, request));
    files.push({ path: `${dir}/${name}.cfg`, content: Buffer.from(out.text), mode: 0o644 });
    notes.push(...out.notes);
  } else if (request.hypervisor === 'libvirt') {
    const out = kind === 'libvirt'
      ? rewriteDomainXml(text!, original!.fileName, request.spec, request)
      : (made('a libvirt domain XML'), generateDomainXml(name, request.spec, { ...request, ...(request.domainType ? { domainType: request.domainType } : {}), ...(request.serialLog !== undefined ? { serialLog: request.serialLog } : {}) }));
    files.push({ path: `${dir}/${name}.xml`, content: Buffer.from(out.text), mode: 0o644 });
    notes.push(...out.notes);
  } else {
    if (!request.qemu) throw new InputError(`guest ${name}: a qemu host needs a run directory and an accelerator for the launcher (a bug in the caller)`);
    const launch = qemuLaunch(request.guest, request.spec, { ...request, ...request.qemu });
    files.push({ path: `${dir}/${name}.sh`, content: Buffer.from(launch.script), mode: 0o755 });
    files.push({ path: `${dir}/ferry-guest-${name}.service`, content: Buffer.from(launch.unit), mode: 0o644 });
    notes.push(...launch.notes);
  }

  if (original) {
    const own = basename(original.fileName);
    const keptName = `${SAFE_FILE_NAME.test(own) ? own : `${request.guest}.config`}.ferry-orig`;
    const path = `${dir}/${keptName}`;
    if (files.some((f) => f.path === path)) throw new InputError(`guest ${name}: the original config would be kept as ${path}, the name of a new file`);
    files.push({ path, content: original.bytes, mode: 0o644 });
  }
  return { files, notes };
}
