import { DefaultLogger, Runtime } from '@temporalio/worker';
import { useTestCodecKeys } from './fixtures/test-codec.js';

useTestCodecKeys();

// Test workers log through the SDK runtime; at its default INFO level every worker start and
// stop is printed, which buries real failures in CI logs. One runtime per test process.
try {
  Runtime.install({ logger: new DefaultLogger('WARN') });
} catch {
  // Already installed in this process by an earlier file.
}
