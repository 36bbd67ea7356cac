import type { Command } from 'commander';
import { UserError } from './user-error.js';

/** `runbook keys new`: an approver's signing key (mode 0600) and the public key line for the config. */
export function registerKeysCommand(program: Command): void {
  const keys = program.command('keys').description('approvers\' signing keys for runbook approve/reject --key');
  keys
    .command('new')
    .description('write a new Ed25519 private key (mode 0600; never over an existing file) and print the public key line for approvals.keys')
    .argument('<file>')
    .option('--id <keyId>', 'the key id the config and the audit show (default key-<start of the public key>)')
    .action(async (file: string, opts: { id?: string }) => {
      const { ApprovalKeyError, createApproverKeyFile } = await import('../lib/approval-keys.js');
      try {
        const { keyId, line } = await createApproverKeyFile(file, opts.id);
        console.error(`wrote ${file} (key ${keyId}); keep it private. Add this line under approvals.keys.<your name> in the config, then restart the workers:`);
        console.log(line);
      } catch (err) {
        if (err instanceof ApprovalKeyError) throw new UserError(err.message);
        throw err;
      }
    });
}
