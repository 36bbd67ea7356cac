/* global require, exports */
// The SDK loads a failure converter by path with require(), in the worker, the client and the
// workflow bundle alike; so this one file is CommonJS. Messages and stack traces go into an
// encoded payload, which the payload codec then encrypts.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { DefaultFailureConverter } = require('@temporalio/common');

exports.failureConverter = new DefaultFailureConverter({ encodeCommonAttributes: true });
