package cli

import (
	"io"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/printers"
)

// table is a metav1.Table printed by cli-runtime's table printer, as
// kubectl prints its own: upper-case headers, aligned columns, and the
// columns of priority 1 only with -o wide.
type table struct{ metav1.Table }

func (t *table) column(name string, priority int32) {
	t.ColumnDefinitions = append(t.ColumnDefinitions, metav1.TableColumnDefinition{Name: name, Type: "string", Priority: priority})
}

func (t *table) row(cells ...any) {
	t.Rows = append(t.Rows, metav1.TableRow{Cells: cells})
}

// print writes the table; wide shows the columns of priority 1 too.
func (t *table) print(out io.Writer, wide bool) error {
	w := printers.GetNewTabWriter(out)
	if err := printers.NewTablePrinter(printers.PrintOptions{Wide: wide}).PrintObj(&t.Table, w); err != nil {
		return err
	}
	return w.Flush()
}
