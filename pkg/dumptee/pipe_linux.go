package dumptee

import (
	"os"

	"golang.org/x/sys/unix"
)

// pipeSize is what growPipe asks for: the most an unprivileged process
// may (fs.pipe-max-size), so a burst of the dump or a pause of restic
// fits in the pipe instead of stopping the other side.
const pipeSize = 1 << 20

// growPipe enlarges f's buffer when f is a pipe; anything else is left.
func growPipe(f *os.File) {
	_, _ = unix.FcntlInt(f.Fd(), unix.F_SETPIPE_SZ, pipeSize)
}
