// JSON Schema helpers for command arguments, and the mapping of ajv errors to QEMU's wording.
import { Ajv, type ErrorObject, type SchemaObject } from 'ajv';
import { QmpArgumentError } from './errors.js';

/**
 * Annotation keywords a command schema may carry:
 * - `qmpType: 'uint64'`: report type errors as QEMU does for uint64 ("Parameter 'x' expects uint64");
 * - `qmpExpects`: the text after "Parameter 'x' expects " for range and format errors.
 */
export interface QmpSchemaAnnotations {
  qmpType?: 'uint64';
  qmpExpects?: string;
}

/** An ajv instance configured for QMP: strict schemas, first error only, no coercion, no defaults. */
export function createAjv(): Ajv {
  const ajv = new Ajv({ strict: true, allErrors: false, verbose: true, coerceTypes: false, useDefaults: false });
  ajv.addKeyword({ keyword: 'qmpType', schemaType: 'string' });
  ajv.addKeyword({ keyword: 'qmpExpects', schemaType: 'string' });
  return ajv;
}

/** Schema of a command that takes no arguments: `arguments` must be absent or {}. */
export const NO_ARGUMENTS: SchemaObject = Object.freeze({ type: 'object', properties: {}, additionalProperties: false });

/** An object schema that rejects unknown members. */
export function objectSchema(properties: Record<string, SchemaObject>, required: string[] = []): SchemaObject {
  return { type: 'object', properties, required, additionalProperties: false };
}

/** A QAPI uint64 member, optionally bounded (`expects` is QEMU's wording of the range). */
export function uint64(max?: number, min = 0, expects?: string): SchemaObject {
  const s: SchemaObject = { type: 'integer', minimum: min, qmpType: 'uint64' };
  if (max !== undefined) s.maximum = max;
  if (expects !== undefined) s.qmpExpects = expects;
  return s;
}

/** A QAPI int member bounded to [min, max]. */
export function boundedInt(min: number, max: number, expects = `an integer in the range of ${min} to ${max}`): SchemaObject {
  return { type: 'integer', minimum: min, maximum: max, qmpExpects: expects };
}

const QAPI_TYPE_NAMES: Record<string, string> = {
  integer: 'integer',
  number: 'number',
  string: 'string',
  boolean: 'boolean',
  object: 'object',
  array: 'array',
  null: 'null',
};

/** JSON pointer `/capabilities/0/state` -> QEMU's full member name `capabilities[0].state`. */
export function memberName(instancePath: string, child?: string): string {
  const segs = instancePath === '' ? [] : instancePath.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (child !== undefined) segs.push(child);
  let name = '';
  for (const s of segs) name += /^\d+$/.test(s) ? `[${s}]` : name === '' ? s : `.${s}`;
  return name;
}

/** The first ajv error of a failed validation, in QEMU's words. */
export function argumentError(err: ErrorObject): QmpArgumentError {
  const parent = (err.parentSchema ?? {}) as QmpSchemaAnnotations & SchemaObject;
  const params = err.params as Record<string, unknown>;
  switch (err.keyword) {
    case 'required': {
      const m = memberName(err.instancePath, String(params.missingProperty));
      return new QmpArgumentError(m, `Parameter '${m}' is missing`);
    }
    case 'additionalProperties': {
      const m = memberName(err.instancePath, String(params.additionalProperty));
      return new QmpArgumentError(m, `Parameter '${m}' is unexpected`);
    }
    case 'type': {
      const m = memberName(err.instancePath);
      if (parent.qmpType === 'uint64') return new QmpArgumentError(m, `Parameter '${m}' expects uint64`);
      const t = Array.isArray(params.type) ? params.type.join(' or ') : String(params.type);
      return new QmpArgumentError(m, `Invalid parameter type for '${m}', expected: ${QAPI_TYPE_NAMES[t] ?? t}`);
    }
    case 'enum': {
      const m = memberName(err.instancePath);
      return new QmpArgumentError(m, `Parameter '${m}' does not accept value '${String(err.data)}'`);
    }
    default: {
      const m = memberName(err.instancePath);
      if (parent.qmpExpects !== undefined) return new QmpArgumentError(m, `Parameter '${m}' expects ${parent.qmpExpects}`);
      if (parent.qmpType === 'uint64') return new QmpArgumentError(m, `Parameter '${m}' expects uint64`);
      return new QmpArgumentError(m, `Parameter '${m}' ${err.message ?? 'is invalid'}`);
    }
  }
}
