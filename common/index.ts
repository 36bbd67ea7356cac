export * from './procedures.js';
export * from './errors.js';
export * from './types.js';
export * from './messages.js';
export * from './search-attributes.js';
export * from './inputs.js';
export * from './stack/types.js';
export * from './stack/classify.js';
