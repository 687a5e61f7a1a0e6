// The environment of every program ferry starts (hooks, xl, lvcreate, virsh,
// qemu-img, the watchdog): ferry's own, minus the secrets only ferry needs.
// A hook is often a site script that logs its environment or runs ssh; the
// repository passphrase and the cloud credentials that reach the offsite copy
// must not go with it.

/** Names removed exactly: the passphrase and the AWS SDK's credential variables. */
const SECRET_NAMES: ReadonlySet<string> = new Set([
  'FERRY_PASSWORD',
  'FERRY_PASSWORD_FILE',
  'AWS_ACCESS_KEY_ID',
  'AWS_SECRET_ACCESS_KEY',
  'AWS_SESSION_TOKEN',
  'AWS_SECURITY_TOKEN',
  'AWS_WEB_IDENTITY_TOKEN_FILE',
  'AWS_CONTAINER_AUTHORIZATION_TOKEN',
  'AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE',
  'AWS_CONTAINER_CREDENTIALS_FULL_URI',
  'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI',
]);

/** Also removed: any later FERRY_*PASSWORD* variant, and AWS_* names that say secret, token or key. */
const SECRET_PATTERNS: readonly RegExp[] = [/^FERRY_.*PASSWORD/i, /^AWS_.*(SECRET|TOKEN|ACCESS_KEY)/i];

export function isSecretVariable(name: string): boolean {
  return SECRET_NAMES.has(name.toUpperCase()) || SECRET_PATTERNS.some((re) => re.test(name));
}

/** `base` (default: this process's environment) without secrets, then `extra` on top. */
export function childEnvironment(extra: Record<string, string> = {}, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(base)) {
    if (value !== undefined && !isSecretVariable(name)) env[name] = value;
  }
  return { ...env, ...extra };
}
