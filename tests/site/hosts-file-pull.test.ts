// hosts.toml for `site restore --pull`: how each host runs ferry, and where it
// reaches the repository (its own `repository`, else the file's, else none:
// the controller's --repo).
import { describe, expect, it } from 'vitest';
import { parseSiteHosts } from '../../src/site/hostsFile';
import { ConfigError } from '../../src/config/configError';

const host = (name: string, extra = '') => `[[host]]\nname = "${name}"\naddress = "ssh://root@${name}"\nhypervisor = "qemu"\nmemory = "8G"\ncpus = 4\n${extra}[[host.pool]]\nname = "p"\ntype = "dir"\npath = "/srv/images"\n`;

function problem(text: string): string {
  try {
    parseSiteHosts(text, '/etc/ferry/hosts.toml');
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('parsed without complaint');
}

describe('hosts.toml for --pull', () => {
  it('reads each host\'s ferry command and repository; the top-level repository serves hosts without their own', () => {
    const site = parseSiteHosts(
      `repository = "s3:https://s3.example.net/backups/fleet"\n${host('new01', 'ferry = "/opt/ferry/bin/ferry --state-dir /var/lib/ferry"\nrepository = "/mnt/backup/repo"\n')}${host('new02')}`,
      '/etc/ferry/hosts.toml',
    );
    expect(site.hosts.map((h) => [h.name, h.ferryCommand, h.repository])).toEqual([
      ['new01', '/opt/ferry/bin/ferry --state-dir /var/lib/ferry', '/mnt/backup/repo'],
      ['new02', undefined, 's3:https://s3.example.net/backups/fleet'],
    ]);
    expect(parseSiteHosts(host('new03'), 'h.toml').hosts[0]).not.toHaveProperty('repository');
  });

  it('refuses an empty ferry command and a repository that is neither s3: nor an absolute path, naming the key', () => {
    expect(problem(host('new01', 'ferry = ""\n'))).toBe(`/etc/ferry/hosts.toml:7: key 'host[0].ferry': expected a non-empty string`);
    expect(problem(host('new01', 'repository = "backup/repo"\n'))).toBe(`/etc/ferry/hosts.toml:7: key 'host[0].repository': expected an s3: location or an absolute path on that host, got "backup/repo"`);
    expect(problem(`repository = 7\n${host('new01')}`)).toMatch(/^\/etc\/ferry\/hosts\.toml:1: key 'repository': expected a string/);
  });
});
