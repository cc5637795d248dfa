package dumpfilter

import (
	"bytes"
	"errors"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func shopDump(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../manifest/testdata/shop-mariadb-10.11.sql") // the manifest tests' real dump
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// run filters dump in chunks of the given size and returns the output.
func run(t *testing.T, dump []byte, r Rules, chunk int) (string, Report, error) {
	t.Helper()
	var out bytes.Buffer
	f := New(&out, r)
	for i := 0; i < len(dump); i += chunk {
		if _, err := f.Write(dump[i:min(i+chunk, len(dump))]); err != nil {
			t.Fatal(err)
		}
	}
	err := f.Close()
	return out.String(), f.Report(), err
}

func rules(t *testing.T, include, exclude, rename []string) Rules {
	t.Helper()
	r, err := ParseRules(include, exclude, rename)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestEmptyRulesPassEverything(t *testing.T) {
	dump := shopDump(t)
	out, rep, err := run(t, dump, Rules{}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if out != string(dump) {
		t.Errorf("the whole dump did not pass unchanged (%d bytes of %d)", len(out), len(dump))
	}
	if !slices.Equal(rep.Databases, []string{"shop"}) || rep.Objects != 7 || len(rep.Restored) != 7 || !slices.Equal(rep.Routines, []string{"shop"}) {
		t.Errorf("report: %+v", rep)
	}
}

func TestIncludeOneTable(t *testing.T) {
	for _, chunk := range []int{1, 7, 4096, 1 << 20} {
		out, rep, err := run(t, shopDump(t), rules(t, []string{"shop.customers"}, nil, nil), chunk)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"CREATE DATABASE /*!32312 IF NOT EXISTS*/ `shop`", "USE `shop`;", "CREATE TABLE `customers`", "INSERT INTO `customers`", "TRIGGER trg1", "SET NAMES", "-- Dump completed"} {
			if !strings.Contains(out, want) {
				t.Errorf("chunk %d: %q missing", chunk, want)
			}
		}
		for _, not := range []string{"`nopk`", "`empty_t`", "we``ird", "VIEW", "EVENT", "FUNCTION", "SEQUENCE"} {
			if strings.Contains(out, not) {
				t.Errorf("chunk %d: %q restored though not selected", chunk, not)
			}
		}
		if !slices.Equal(rep.Restored, []string{"shop.customers"}) || len(rep.Routines) != 0 || len(rep.Unmatched) != 0 {
			t.Errorf("chunk %d: report %+v", chunk, rep)
		}
	}
}

func TestExcludeKeepsTheRest(t *testing.T) {
	out, rep, err := run(t, shopDump(t), rules(t, []string{"shop"}, []string{"shop.n*", "shop.v?"}, nil), 100)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "`nopk`") || strings.Contains(out, "VIEW `v1`") {
		t.Errorf("excluded objects restored")
	}
	for _, want := range []string{"VIEW `v 2`", "CREATE TABLE `we``ird`", "FUNCTION `f1`", "EVENT `ev1`", "SEQUENCE"} {
		if !strings.Contains(out, want) {
			t.Errorf("%q missing", want)
		}
	}
	if slices.Contains(rep.Restored, "shop.nopk") || !slices.Contains(rep.Restored, "shop.we`ird") {
		t.Errorf("restored: %v", rep.Restored)
	}
}

func TestRenameDatabase(t *testing.T) {
	dump := strings.Replace(string(shopDump(t)), "from `customers` where", "from `shop`.`customers` where", 1)
	out, rep, err := run(t, []byte(dump), rules(t, []string{"shop"}, nil, []string{"shop=shop_restored"}), 333)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "CREATE DATABASE /*!32312 IF NOT EXISTS*/ `shop_restored`") || strings.Count(out, "USE `shop_restored`;") != 2 ||
		!strings.Contains(out, "from `shop_restored`.`customers` where") {
		t.Errorf("not renamed:\n%s", out)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "`shop`") && !strings.HasPrefix(l, "INSERT") {
			t.Errorf("a line still names the old database: %s", l)
		}
	}
	if !slices.Equal(rep.RestoredDatabases, []string{"shop_restored"}) {
		t.Errorf("restored databases %v", rep.RestoredDatabases)
	}
}

func TestNothingSelectedWritesNothing(t *testing.T) {
	for _, r := range []Rules{
		rules(t, []string{"crm.*"}, nil, nil),
		rules(t, []string{"shop.nosuch"}, nil, nil),
		rules(t, nil, []string{"shop"}, nil),
	} {
		out, rep, err := run(t, shopDump(t), r, 50)
		if !errors.Is(err, ErrNothingSelected) || out != "" {
			t.Errorf("%s: err %v, %d bytes written", r, err, len(out))
		}
		if err != nil && !strings.Contains(err.Error(), "databases shop") {
			t.Errorf("the error does not say what the snapshot holds: %v", err)
		}
		if len(r.Include) > 0 && len(rep.Unmatched) != 1 {
			t.Errorf("%s: unmatched %v", r, rep.Unmatched)
		}
	}
}

const twoDBs = `-- MariaDB dump 10.19
--
-- Host: localhost    Database: 
-- ------------------------------------------------------
/*!40101 SET NAMES utf8mb4 */;

--
-- Current Database: ` + "`crm`" + `
--

CREATE DATABASE /*!32312 IF NOT EXISTS*/ ` + "`crm`" + `;

USE ` + "`crm`" + `;

--
-- Table structure for table ` + "`customers`" + `
--

CREATE TABLE ` + "`customers`" + ` (id INT PRIMARY KEY);
INSERT INTO ` + "`customers`" + ` VALUES (1);

--
-- Current Database: ` + "`mysql`" + `
--

CREATE DATABASE /*!32312 IF NOT EXISTS*/ ` + "`mysql`" + `;

USE ` + "`mysql`" + `;

--
-- Table structure for table ` + "`global_priv`" + `
--

CREATE TABLE ` + "`global_priv`" + ` (Host char(255), User char(128));
INSERT INTO ` + "`global_priv`" + ` VALUES ('%','app');

--
-- Table structure for table ` + "`time_zone`" + `
--

CREATE TABLE ` + "`time_zone`" + ` (id INT);

--
-- Current Database: ` + "`shop`" + `
--

CREATE DATABASE /*!32312 IF NOT EXISTS*/ ` + "`shop`" + `;

USE ` + "`shop`" + `;

--
-- Table structure for table ` + "`orders`" + `
--

CREATE TABLE ` + "`orders`" + ` (id INT PRIMARY KEY, c INT,
  CONSTRAINT ` + "`fk`" + ` FOREIGN KEY (c) REFERENCES ` + "`crm`.`customers`" + ` (id));
INSERT INTO ` + "`orders`" + ` VALUES (1,1);
/*! FLUSH PRIVILEGES */;
-- stash-manifest: {}

-- Dump completed on 2026-12-07
`

func TestForeignKeysAccountsAndTrailer(t *testing.T) {
	out, rep, err := run(t, []byte(twoDBs), rules(t, []string{"shop.*"}, nil, nil), 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], "shop.orders has a foreign key to crm.customers") {
		t.Errorf("warnings: %v", rep.Warnings)
	}
	if rep.Accounts || strings.Contains(out, "FLUSH PRIVILEGES") || strings.Contains(out, "stash-manifest") || strings.Contains(out, "crm") && !strings.Contains(out, "REFERENCES") {
		t.Errorf("accounts %v, output:\n%s", rep.Accounts, out)
	}
	out, rep, err = run(t, []byte(twoDBs), rules(t, []string{"shop", "crm"}, nil, nil), 64)
	if err != nil || len(rep.Warnings) != 0 || rep.Accounts || strings.Contains(out, "global_priv") {
		t.Errorf("shop and crm: %v, %+v", err, rep)
	}
	out, rep, err = run(t, []byte(twoDBs), Rules{Exclude: []Pattern{{DB: "mysql", Name: "time_zone"}}}, 64)
	if err != nil || !rep.Accounts || !strings.Contains(out, "FLUSH PRIVILEGES") || strings.Contains(out, "`time_zone`") {
		t.Errorf("accounts not reported or not flushed: %v, %+v", err, rep)
	}
	if !slices.Equal(rep.RestoredDatabases, []string{"crm", "mysql", "shop"}) {
		t.Errorf("restored databases %v", rep.RestoredDatabases)
	}
}

func TestParseRules(t *testing.T) {
	r, err := ParseRules([]string{"shop.*", "crm.customers", "logs", "`my.db`.`t``x`"}, []string{"shop.audit_*"}, []string{"shop=shop_restored"})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Selects("shop", "orders") || r.Selects("shop", "audit_2024") || !r.Selects("crm", "customers") || r.Selects("crm", "leads") ||
		!r.Selects("logs", "x") || !r.Selects("my.db", "t`x") || r.As("shop") != "shop_restored" || r.As("crm") != "crm" {
		t.Errorf("rules %+v", r)
	}
	if !r.SelectsWhole("shop") || r.SelectsWhole("crm") || !r.SelectsDatabase("crm") {
		t.Error("whole-database selection")
	}
	for _, bad := range [][3][]string{
		{{"shop.a.b"}, nil, nil}, {{"[x"}, nil, nil}, {{"*"}, nil, {"shop"}}, {{"*"}, nil, {"a=b", "c=b"}},
		{{"*"}, nil, {"mysql=x"}}, {{"*"}, nil, {"a=b.c"}}, {{""}, nil, nil}, {{"`open"}, nil, nil},
		// A rename says what else is restored, renames what it selects, and
		// never into a database restored under its own name.
		{{"crm.*"}, nil, {"shop=s2"}}, {{"shop.*", "crm.*"}, nil, {"shop=crm"}},
	} {
		if _, err := ParseRules(bad[0], bad[1], bad[2]); !errors.Is(err, ErrBadRule) {
			t.Errorf("%q accepted: %v", bad, err)
		}
	}
}

func TestAnExcludeThatMatchesNothingIsAWarning(t *testing.T) {
	_, rep, err := run(t, shopDump(t), rules(t, nil, []string{"msyql.*", "shop.nopk"}, nil), 4096)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(rep.Warnings, func(w string) bool { return strings.Contains(w, "--exclude msyql.*") }) ||
		slices.ContainsFunc(rep.Warnings, func(w string) bool { return strings.Contains(w, "--exclude shop.nopk") }) {
		t.Errorf("warnings %q: want one for msyql.* alone", rep.Warnings)
	}
}

func TestRenamesThatSayWhatIsRestored(t *testing.T) {
	// A rename alone restores the renamed database alone.
	r, err := ParseRules(nil, []string{"shop.audit_*"}, []string{"shop=s2"})
	if err != nil || !r.Selects("shop", "orders") || r.Selects("shop", "audit_1") || r.Selects("crm", "customers") || r.Selects("mysql", "user") || r.As("shop") != "s2" {
		t.Errorf("a rename alone: %+v, %v", r, err)
	}
	// So a mistyped one selects nothing, and nothing is written.
	out, _, err := run(t, shopDump(t), rules(t, nil, nil, []string{"shpo=s2"}), 4096)
	if !errors.Is(err, ErrNothingSelected) || out != "" {
		t.Errorf("a mistyped rename: %v, wrote %d bytes", err, len(out))
	}
	for _, ok := range [][3][]string{
		{{"shop.*"}, nil, {"shop=s2"}}, {{"sh*"}, nil, {"shop=s2"}}, {{"*"}, nil, {"shop=s2"}},
		{{"shop.orders"}, nil, {"shop=s2"}}, {{"shop", "crm"}, nil, {"shop=crm", "crm=crm_old"}},
	} {
		if _, err := ParseRules(ok[0], ok[1], ok[2]); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
}

// A dump made with --add-drop-database drops each database first: a
// partial restore drops only what it restores whole, under its new name.
func TestDropDatabaseOnlyForWhatIsRestoredWhole(t *testing.T) {
	dump := "-- MariaDB dump\n--\n-- Current Database: `shop`\n--\n\n/*!40000 DROP DATABASE IF EXISTS `shop`*/;\n\nCREATE DATABASE `shop`;\nUSE `shop`;\n\n" +
		"--\n-- Table structure for table `orders`\n--\n\nDROP TABLE IF EXISTS `orders`;\nCREATE TABLE `orders` (`id` int);\n\n" +
		"--\n-- Table structure for table `audit`\n--\n\nDROP TABLE IF EXISTS `audit`;\nCREATE TABLE `audit` (`id` int);\n"
	for _, c := range []struct {
		include, rename []string
		drop            string // the DROP DATABASE that goes through, "" for none
	}{
		{[]string{"shop.orders"}, nil, ""},
		{[]string{"shop.*"}, []string{"shop=shop_restored"}, "/*!40000 DROP DATABASE IF EXISTS `shop_restored`*/;\n"},
		{[]string{"shop.orders"}, []string{"shop=shop_restored"}, ""},
		{[]string{"shop"}, nil, "/*!40000 DROP DATABASE IF EXISTS `shop`*/;\n"},
	} {
		out, rep, err := run(t, []byte(dump), rules(t, c.include, nil, c.rename), 7)
		if err != nil {
			t.Fatal(err)
		}
		drops := regexp.MustCompile(`(?m)^.*DROP DATABASE.*\n`).FindAllString(out, -1)
		if c.drop == "" && len(drops) != 0 || c.drop != "" && !slices.Equal(drops, []string{c.drop}) {
			t.Errorf("include %v rename %v: DROP DATABASE lines %q, want %q", c.include, c.rename, drops, c.drop)
		}
		if c.drop == "" && !slices.ContainsFunc(rep.Warnings, func(w string) bool { return strings.Contains(w, "DROP DATABASE `shop`") }) {
			t.Errorf("include %v: the left-out DROP DATABASE is not in the warnings %q", c.include, rep.Warnings)
		}
	}
}

func TestRenameReachesBodiesWrittenWithoutQuotes(t *testing.T) {
	dump := "-- MariaDB dump\n--\n-- Current Database: `shop`\n--\n\nCREATE DATABASE `shop`;\nUSE `shop`;\n\n--\n-- Dumping routines for database 'shop'\n--\n" +
		"DELIMITER ;;\nCREATE PROCEDURE `p`() BEGIN SELECT * FROM shop.orders JOIN myshop.x JOIN `shop`.y; INSERT INTO shop.`log` VALUES ('shop'); END\n;;\nDELIMITER ;\n"
	out, _, err := run(t, []byte(dump), rules(t, []string{"shop.*"}, nil, []string{"shop=s2"}), 9)
	if err != nil {
		t.Fatal(err)
	}
	want := "BEGIN SELECT * FROM s2.orders JOIN myshop.x JOIN `s2`.y; INSERT INTO s2.`log` VALUES ('shop'); END"
	if !strings.Contains(out, want) || !strings.Contains(out, "USE `s2`;") || !strings.Contains(out, "CREATE DATABASE `s2`;") {
		t.Errorf("renamed:\n%s", out)
	}
}

func TestEmptyRulesReportAccounts(t *testing.T) {
	out, rep, err := run(t, []byte(twoDBs), Rules{}, 11)
	if err != nil || out != twoDBs || !rep.Accounts || len(rep.Restored) != 4 || rep.Objects != 4 {
		t.Errorf("err %v, unchanged %v, report %+v", err, out == twoDBs, rep)
	}
}
