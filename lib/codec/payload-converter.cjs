/* global require, exports */
// The worker's payload converter, loaded by path in the worker and the workflow bundle (hence
// CommonJS, like failure-converter.cjs). The default converter throws on an unknown encoding
// or malformed JSON, and in a signal's arguments that fails every later workflow task of the
// run: anyone who can reach the server could wedge a run with one such signal. Here such a
// payload becomes the marker {"__undecodable": "<why>"}, which message handlers refuse.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { DefaultPayloadConverter } = require('@temporalio/common');

const inner = new DefaultPayloadConverter();

exports.payloadConverter = {
  toPayload(value) {
    return inner.toPayload(value);
  },
  fromPayload(payload) {
    try {
      return inner.fromPayload(payload);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      return { __undecodable: `payload could not be converted: ${why.slice(0, 300)}` };
    }
  },
};
