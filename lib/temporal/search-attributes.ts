import { status as GrpcStatus } from '@grpc/grpc-js';
import { isGrpcServiceError, type Connection } from '@temporalio/client';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
// Not re-exported from the package index; the SDK exports it for registering search attributes.
import { encodeSearchAttributeIndexedValueType } from '@temporalio/common/lib/search-attributes.js';
import { SEARCH_ATTRIBUTES } from '../../common/search-attributes.js';

type CliType = (typeof SEARCH_ATTRIBUTES)[number]['type'];
const SDK_TYPE: Record<CliType, SearchAttributeType> = {
  Keyword: SearchAttributeType.KEYWORD,
  Bool: SearchAttributeType.BOOL,
  Double: SearchAttributeType.DOUBLE,
};

/** The runbooks' search attributes as the SDK's test server takes them. */
export function searchAttributeKeys() {
  return SEARCH_ATTRIBUTES.map((a) => defineSearchAttributeKey(a.name, SDK_TYPE[a.type]));
}

/** `--search-attribute Name=Type` for each, as `temporal server start-dev` takes them. */
export function searchAttributeArgs(): string[] {
  return SEARCH_ATTRIBUTES.flatMap((a) => ['--search-attribute', `${a.name}=${a.type}`]);
}

/**
 * Registers the runbooks' search attributes in `namespace` if missing (idempotent).
 * For clusters not started by us; the dev server gets them on its command line.
 * Returns the names it added. An attribute registered with another type is an error.
 */
export async function ensureSearchAttributes(connection: Pick<Connection, 'operatorService'>, namespace: string): Promise<string[]> {
  const wanted = SEARCH_ATTRIBUTES.map((a) => {
    const indexed = encodeSearchAttributeIndexedValueType(SDK_TYPE[a.type]);
    if (indexed === undefined) throw new Error(`search attribute ${a.name}: unknown type ${a.type}`);
    return { ...a, indexed };
  });
  const check = async () => {
    const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace });
    const missing: typeof wanted = [];
    for (const w of wanted) {
      const have = customAttributes?.[w.name];
      if (have === undefined || have === null) missing.push(w);
      else if (have !== w.indexed) {
        throw new Error(`search attribute ${w.name} already exists in namespace ${namespace} with another type (indexed type ${have}); runbooks need ${w.type}`);
      }
    }
    return missing;
  };

  const missing = await check();
  if (missing.length === 0) return [];
  try {
    await connection.operatorService.addSearchAttributes({
      namespace,
      searchAttributes: Object.fromEntries(missing.map((m) => [m.name, m.indexed])),
    });
  } catch (err) {
    // Someone else registered them in the meantime: fine if the types match.
    if (!(isGrpcServiceError(err) && err.code === GrpcStatus.ALREADY_EXISTS)) {
      const detail = err instanceof Error ? err.message : String(err);
      throw new Error(
        `cannot add search attributes ${missing.map((m) => `${m.name} (${m.type})`).join(', ')} to namespace ${namespace}: ${detail}` +
          ' (on Temporal Cloud add them in the namespace settings or with tcld)',
        { cause: err },
      );
    }
  }
  const still = await check();
  if (still.length > 0) throw new Error(`search attributes ${still.map((m) => m.name).join(', ')} are still missing in namespace ${namespace}`);
  return missing.map((m) => m.name);
}
