export * from './types';
export * from './versions';
export * from './validation';
export * from './wardle';
