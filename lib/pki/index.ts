export * from './pki-error';
export * from './certificate-authority';
export * from './serving-certificate';
export * from './inspect';
export * from './store';
