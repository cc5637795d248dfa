package schedule

// Check reports whether expr is a schedule Parse accepts, for callers
// that need only the verdict (contract.ParseVerify).
func Check(expr string) error {
	_, err := Parse(expr)
	return err
}
