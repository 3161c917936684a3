/**
 * The swagger 2.0 document in protocol buffers, as the `openapi.v2.Document` message of
 * google/gnostic (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`). client-go's
 * discovery asks /openapi/v2 for this encoding only, and kubectl up to 1.28 needs it for
 * `explain` and client-side validation when pointed straight at the server.
 *
 * A small proto3 writer: scalars equal to their default are omitted, as proto3 does; values of
 * `default`, `enum`, `example` and vendor extensions travel as `Any{yaml}` (JSON text is YAML).
 */

type Json = unknown;
type JsonObject = Record<string, Json>;

/** One message being written: fields appended in the order given. */
class Message {
  private readonly parts: Buffer[] = [];

  private tag(field: number, wireType: number): void {
    this.varint((field << 3) | wireType);
  }

  private varint(value: number): void {
    const bytes: number[] = [];
    let v = value;
    while (v >= 0x80) {
      bytes.push((v % 0x80) | 0x80);
      v = Math.floor(v / 0x80);
    }
    bytes.push(v);
    this.parts.push(Buffer.from(bytes));
  }

  bytes(field: number, value: Buffer): this {
    this.tag(field, 2);
    this.varint(value.length);
    this.parts.push(value);
    return this;
  }

  string(field: number, value: Json): this {
    if (typeof value === 'string' && value !== '') this.bytes(field, Buffer.from(value, 'utf8'));
    return this;
  }

  strings(field: number, values: Json): this {
    if (Array.isArray(values)) for (const v of values) if (typeof v === 'string') this.bytes(field, Buffer.from(v, 'utf8'));
    return this;
  }

  bool(field: number, value: Json): this {
    if (value === true) {
      this.tag(field, 0);
      this.varint(1);
    }
    return this;
  }

  int64(field: number, value: Json): this {
    if (typeof value === 'number' && Number.isInteger(value) && value > 0) {
      this.tag(field, 0);
      this.varint(value);
    }
    return this;
  }

  double(field: number, value: Json): this {
    if (typeof value === 'number' && value !== 0) {
      this.tag(field, 1);
      const b = Buffer.alloc(8);
      b.writeDoubleLE(value);
      this.parts.push(b);
    }
    return this;
  }

  message(field: number, value: Message | undefined): this {
    if (value) this.bytes(field, value.finish());
    return this;
  }

  finish(): Buffer {
    return Buffer.concat(this.parts);
  }
}

const isObject = (v: Json): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);

/** `Any{yaml}`: the value as JSON text, which YAML readers parse. */
function any(value: Json): Message {
  return new Message().string(2, JSON.stringify(value));
}

function namedAny(name: string, value: Json): Message {
  return new Message().string(1, name).message(2, any(value));
}

function vendorExtensions(message: Message, field: number, object: JsonObject): void {
  for (const [key, value] of Object.entries(object)) if (key.startsWith('x-')) message.message(field, namedAny(key, value));
}

function schema(s: JsonObject): Message {
  const m = new Message()
    .string(1, s.$ref)
    .string(2, s.format)
    .string(3, s.title)
    .string(4, s.description);
  if (s.default !== undefined) m.message(5, any(s.default));
  m.double(6, s.multipleOf).double(7, s.maximum).bool(8, s.exclusiveMaximum).double(9, s.minimum).bool(10, s.exclusiveMinimum);
  m.int64(11, s.maxLength).int64(12, s.minLength).string(13, s.pattern).int64(14, s.maxItems).int64(15, s.minItems).bool(16, s.uniqueItems);
  m.int64(17, s.maxProperties).int64(18, s.minProperties).strings(19, s.required);
  if (Array.isArray(s.enum)) for (const v of s.enum) m.message(20, any(v));
  if (isObject(s.additionalProperties)) m.message(21, new Message().message(1, schema(s.additionalProperties)));
  else if (typeof s.additionalProperties === 'boolean') m.message(21, new Message().bool(2, s.additionalProperties));
  if (typeof s.type === 'string') m.message(22, new Message().string(1, s.type));
  else if (Array.isArray(s.type)) m.message(22, new Message().strings(1, s.type));
  if (isObject(s.items)) m.message(23, new Message().message(1, schema(s.items)));
  else if (Array.isArray(s.items)) m.message(23, s.items.filter(isObject).reduce((items, item) => items.message(1, schema(item)), new Message()));
  if (Array.isArray(s.allOf)) for (const sub of s.allOf) if (isObject(sub)) m.message(24, schema(sub));
  if (isObject(s.properties)) {
    const props = new Message();
    for (const [name, sub] of Object.entries(s.properties)) if (isObject(sub)) props.message(1, new Message().string(1, name).message(2, schema(sub)));
    m.message(25, props);
  }
  m.string(26, s.discriminator).bool(27, s.readOnly);
  if (s.example !== undefined) m.message(30, any(s.example));
  vendorExtensions(m, 31, s);
  return m;
}

function parameter(p: JsonObject): Message {
  if (p.in === 'body') {
    const body = new Message().string(1, p.description).string(2, p.name).string(3, p.in).bool(4, p.required);
    if (isObject(p.schema)) body.message(5, schema(p.schema));
    return new Message().message(1, new Message().message(1, body));
  }
  const sub = new Message().bool(1, p.required).string(2, p.in).string(3, p.description).string(4, p.name);
  let kind: number;
  if (p.in === 'path') {
    sub.string(5, p.type).string(6, p.format).bool(19, p.uniqueItems);
    kind = 4;
  } else if (p.in === 'query') {
    sub.string(6, p.type).string(7, p.format).bool(20, p.uniqueItems);
    kind = 3;
  } else {
    sub.string(5, p.type).string(6, p.format).bool(19, p.uniqueItems);
    kind = 1;
  }
  return new Message().message(1, new Message().message(2, new Message().message(kind, sub)));
}

function operation(op: JsonObject): Message {
  const m = new Message().strings(1, op.tags).string(2, op.summary).string(3, op.description).string(5, op.operationId).strings(6, op.produces).strings(7, op.consumes);
  if (Array.isArray(op.parameters)) for (const p of op.parameters) if (isObject(p)) m.message(8, parameter(p));
  if (isObject(op.responses)) {
    const responses = new Message();
    for (const [code, r] of Object.entries(op.responses)) {
      if (!isObject(r)) continue;
      const response = new Message().string(1, r.description);
      if (isObject(r.schema)) response.message(2, new Message().message(1, schema(r.schema)));
      responses.message(1, new Message().string(1, code).message(2, new Message().message(1, response)));
    }
    m.message(9, responses);
  }
  m.strings(10, op.schemes).bool(11, op.deprecated);
  vendorExtensions(m, 13, op);
  return m;
}

const PATH_ITEM_FIELDS: Record<string, number> = { get: 2, put: 3, post: 4, delete: 5, options: 6, head: 7, patch: 8 };

/** Encodes a swagger 2.0 document as a gnostic `openapi.v2.Document`. */
export function encodeOpenApiV2(doc: JsonObject): Buffer {
  const m = new Message().string(1, doc.swagger);
  if (isObject(doc.info)) m.message(2, new Message().string(1, doc.info.title).string(2, doc.info.version).string(3, doc.info.description));
  m.string(3, doc.host).string(4, doc.basePath).strings(5, doc.schemes).strings(6, doc.consumes).strings(7, doc.produces);
  if (isObject(doc.paths)) {
    const paths = new Message();
    for (const [path, item] of Object.entries(doc.paths)) {
      if (!isObject(item)) continue;
      const pathItem = new Message();
      for (const [method, field] of Object.entries(PATH_ITEM_FIELDS)) if (isObject(item[method])) pathItem.message(field, operation(item[method] as JsonObject));
      if (Array.isArray(item.parameters)) for (const p of item.parameters) if (isObject(p)) pathItem.message(9, parameter(p));
      paths.message(2, new Message().string(1, path).message(2, pathItem));
    }
    m.message(8, paths);
  }
  if (isObject(doc.definitions)) {
    const definitions = new Message();
    for (const [name, s] of Object.entries(doc.definitions)) if (isObject(s)) definitions.message(1, new Message().string(1, name).message(2, schema(s)));
    m.message(9, definitions);
  }
  if (Array.isArray(doc.security)) {
    for (const requirement of doc.security) {
      if (!isObject(requirement)) continue;
      const req = new Message();
      for (const [name, scopes] of Object.entries(requirement)) req.message(1, new Message().string(1, name).message(2, new Message().strings(1, scopes)));
      m.message(12, req);
    }
  }
  if (isObject(doc.securityDefinitions)) {
    const defs = new Message();
    for (const [name, def] of Object.entries(doc.securityDefinitions)) {
      if (!isObject(def) || def.type !== 'apiKey') continue;
      const apiKey = new Message().string(1, def.type).string(2, def.name).string(3, def.in).string(4, def.description);
      defs.message(1, new Message().string(1, name).message(2, new Message().message(2, apiKey)));
    }
    m.message(13, defs);
  }
  vendorExtensions(m, 16, doc);
  return m.finish();
}
