// Package browsertest drives the defender demo and its admin pages in a real
// headless Chromium (Debian's chromium package, through chromedp): a user
// locks themselves out, an admin sees the block and unblocks it, the user
// logs in; a blocked username holding a script cannot run it in the admin
// page. It is a nested module so that users of the library never inherit
// chromedp. The test saves screenshots of the lockout page and the admin
// page to artifacts/ (or $DEFENDER_ARTIFACTS), which git ignores; a
// reviewed set is kept in docs/img.
package browsertest
