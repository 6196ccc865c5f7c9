'use strict';
// Checks a number, waits past the server's connection idle timeout, and checks again on
// the same client: a server that closes idle connections must not fail the next call.
// Usage: across_idle_close.js SECONDS
const path = require('node:path');
const { client, metadata } = require(path.join(__dirname, '../../examples/node/client'));

const seconds = Number(process.argv[2]);
const checker = client('NumberCheck');
const check = () => new Promise((resolve, reject) => {
  const deadline = new Date(Date.now() + 10_000);
  checker.CheckNumber({ phone_number: '+819012345678' }, metadata(), { deadline },
    (error, answer) => (error ? reject(error) : resolve(answer)));
});
(async () => {
  await check();
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  await check();
  console.log('checks 2');
  process.exit(0);
})().catch((error) => {
  console.error(`${error.code}: ${error.details}`);
  process.exit(1);
});
