export * from './debian';
export * from './ferry';
export * from './files';
export * from './mounts';
export * from './scratch';
export * from './system';
export * from './sshHosts';
export * from './bootableGuest';
