import deepcat

result = deepcat.check("digits")  # unreadable files, duplicates, leaks across splits, class balance
print("\n".join(result.audit.summary_lines()))
print(result.audit_path)  # checks/digits/audit.json
