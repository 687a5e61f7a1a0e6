import { describe, expect, it } from 'vitest';
import { parseSiteHosts } from '../../src/site/hostsFile';
import { ConfigError } from '../../src/config/configError';

const GOOD = `
ssh_config = "ssh/config"
[[host]]
name = "new01"
address = "local"
hypervisor = "xen"
memory = "256G"
cpus = 48
bridges = { xenbr0 = "br-prod" }
[[host.pool]]
name = "vg0"
type = "lvm"
volume_group = "vg0"
thin_pool = "thin0"

[[host]]
name = "new02"
address = "ssh://root@192.0.2.10:2222"
hypervisor = "libvirt"
memory = 68719476736
cpus = 16
cpu_overcommit = 4
config_dir = "/srv/libvirt-xml/"
[[host.pool]]
name = "images"
type = "dir"
path = "/var/lib/ferry-images"

[guest."db*"]
anti_affinity = "db"

[guest."db01"]
pin = "new01"
`;

function problem(text: string): string {
  try {
    parseSiteHosts(text, '/etc/ferry/hosts.toml');
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('parsed without complaint');
}

describe('hosts.toml', () => {
  it('reads hosts, pools, addresses, bridges and placement rules', () => {
    const site = parseSiteHosts(GOOD, '/etc/ferry/hosts.toml');
    expect(site.hosts).toEqual([
      {
        name: 'new01', address: { kind: 'local' }, hypervisor: 'xen', memoryBytes: 256 * 1024 ** 3, cpus: 48, cpuOvercommit: 1,
        bridges: { xenbr0: 'br-prod' }, configDir: '/etc/xen', accel: 'kvm', pools: [{ name: 'vg0', type: 'lvm', volumeGroup: 'vg0', thinPool: 'thin0' }],
      },
      {
        name: 'new02', address: { kind: 'ssh', destination: 'root@192.0.2.10', port: 2222 }, hypervisor: 'libvirt', memoryBytes: 64 * 1024 ** 3,
        cpus: 16, cpuOvercommit: 4, bridges: {}, configDir: '/srv/libvirt-xml', accel: 'kvm', pools: [{ name: 'images', type: 'dir', path: '/var/lib/ferry-images' }],
      },
    ]);
    expect(site.sshConfig).toBe('/etc/ferry/ssh/config');
    expect(site.rules.map((r) => [r.pattern, r.pin, r.antiAffinity])).toEqual([['db*', undefined, 'db'], ['db01', 'new01', undefined]]);
  });

  it('names the file, line and key of a mistake, and says what is expected', () => {
    expect(problem(GOOD.replace('memory = "256G"', 'memory = "lots"'))).toBe(`/etc/ferry/hosts.toml:7: key 'host[0].memory': expected a size such as "256G" or "1.5T", got a string "lots"`);
    expect(problem(GOOD.replace('hypervisor = "xen"', 'hypervisor = "vmware"'))).toMatch(/^\/etc\/ferry\/hosts\.toml:6: key 'host\[0\]\.hypervisor': expected one of "xen", "libvirt", "qemu"/);
    expect(problem(GOOD.replace('pin = "new01"', 'pin = "new09"'))).toMatch(/:33: key 'guest\.db01\.pin': expected the name of a \[\[host\]\] \(new01, new02\), got "new09"/);
    expect(problem(GOOD.replace('name = "new02"', 'name = "new01"'))).toMatch(/key 'host\[1\]\.name': expected a name not used by another \[\[host\]\]/);
    expect(problem(GOOD.replace('address = "local"', 'address = "sftp://x"'))).toMatch(/expected "local" or "ssh:\/\/\[user@\]host\[:port\]"/);
    expect(problem(GOOD.replace('address = "local"', 'address = "ssh://-oProxyCommand=x"'))).toMatch(/expected a host name|expected "local"/);
    expect(problem(GOOD.replace('path = "/var/lib/ferry-images"', 'path = "images"'))).toMatch(/expected an absolute path on the target host/);
    expect(problem(GOOD.replace('volume_group = "vg0"', 'volume_grup = "vg0"'))).toMatch(/unknown key; .*\(did you mean 'volume_group'\?\)/);
    expect(problem('')).toBe('/etc/ferry/hosts.toml: no [[host]] tables: describe at least one target host (name, hypervisor, memory, cpus, one [[host.pool]])');
    expect(problem('[[host]]\nname = "a"\nhypervisor = "xen"\nmemory = "1G"\ncpus = 1\n')).toMatch(/missing key pool: every host needs at least one \[\[host\.pool\]\]/);
    expect(problem('[[host]\n')).toMatch(/^\/etc\/ferry\/hosts\.toml:1: TOML syntax error/);
  });
});
