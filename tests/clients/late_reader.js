'use strict';
// Sends an audit list and reads no answer for a while: the server must pace it with flow
// control, not close the connection. Usage: late_reader.js ROWS SECONDS
const path = require('node:path');
const { once } = require('node:events');
const { client, metadata } = require(path.join(__dirname, '../../examples/node/client'));

const [rows, seconds] = process.argv.slice(2).map(Number);
const call = client('NumberCheck').AuditNumbers(metadata());
call.pause();
setTimeout(() => call.resume(), seconds * 1000);
let count = 0;
call.on('data', (answer) => {
  if (Number(answer.index) !== count || answer.customer_ref !== `c${count}`) {
    console.error('out of order', answer.index, count);
    process.exit(1);
  }
  count++;
});
call.on('error', (error) => {
  console.error(`${error.code}: ${error.details} after ${count}`);
  process.exit(1);
});
call.on('end', () => {
  console.log(`results ${count}`);
  process.exit(0);
});
(async () => {
  for (let i = 0; i < rows; i++) {
    if (!call.write({ customer_ref: `c${i}`, phone_number: `+8190${10000000 + i}` })) await once(call, 'drain');
  }
  call.end();
})();
