#!/usr/bin/env node
// The built CLI lives in dist/ (compiled by `npm install`'s prepare step, `tsc -b`).
import "../dist/bin.js"
