package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
)

// UpdateStatus re-reads an object and writes its status, retrying on
// Conflict: the one way every status here is written.
func UpdateStatus[T runtime.Object](ctx context.Context, c Client[T], name string, mutate func(T)) error {
	return UpdateStatusIf(ctx, c, name, func(o T) error { mutate(o); return nil })
}

// UpdateStatusIf is UpdateStatus whose mutate may refuse the write: its
// error is returned and nothing is written.
func UpdateStatusIf[T runtime.Object](ctx context.Context, c Client[T], name string, mutate func(T) error) error {
	return retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		obj, err := c.Get(ctx, name)
		if err != nil {
			return err
		}
		if err := mutate(obj); err != nil {
			return err
		}
		_, err = c.UpdateStatus(ctx, obj)
		return err
	})
}

// FinalWriteTimeout bounds how long a final status write is retried while
// the API server does not answer (restarting, overloaded): the outcome of
// a session must not be lost to a short outage.
const FinalWriteTimeout = 5 * time.Minute

// Durable is UpdateStatus retried through transient API errors
// (connection refused, timeouts, 5xx) for up to FinalWriteTimeout.
func Durable[T runtime.Object](ctx context.Context, c Client[T], name string, mutate func(T)) error {
	return DurableIf(ctx, c, name, func(o T) error { mutate(o); return nil })
}

// DurableIf is Durable whose mutate may refuse the write; a refusal, like
// NotFound, Invalid and BadRequest, is returned at once, not retried.
func DurableIf[T runtime.Object](ctx context.Context, c Client[T], name string, mutate func(T) error) error {
	ctx, cancel := context.WithTimeout(ctx, FinalWriteTimeout)
	defer cancel()
	var last error
	// Doubling from 250 ms, then every 5 s until ctx ends.
	delay := wait.Backoff{Duration: 250 * time.Millisecond, Factor: 2, Cap: 5 * time.Second, Steps: 10}.DelayFunc()
	err := delay.Until(ctx, true, false, func(ctx context.Context) (bool, error) {
		last = UpdateStatusIf(ctx, c, name, mutate)
		if last == nil || permanent(last) {
			return true, last
		}
		return false, nil
	})
	switch {
	case err == nil:
		return nil
	case permanent(err):
		return err
	case last != nil:
		return fmt.Errorf("gave up after %s: %w", FinalWriteTimeout, last)
	}
	return err
}

// permanent errors do not go away by writing again. Forbidden is not one:
// a restarting API server answers 403 until its RBAC cache is filled.
func permanent(err error) bool {
	return errors.Is(err, ErrSettled) || apierrors.IsNotFound(err) || apierrors.IsInvalid(err) || apierrors.IsBadRequest(err)
}
